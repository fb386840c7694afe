#!/usr/bin/env bash
# SRIS-Net trainings side by side on one lent GPU, each on a wall-time schedule of MINUTES, with the shipped recipe's
# constraints and the job's attack mix; the checkpoints, logs and curves are copied to OUT. Written for a GPU lent for
# a fixed few minutes, where steps/s is not known in advance.
#
#   DATA=.gpu_photos MINUTES=8.5 CROP=128 BATCH=32 bash scripts/gpu_train.sh     # the from-scratch runs (docs/history.md)
#   DATA=.gpu_photos MINUTES=8 RUNS="$(cat scripts/gpu_most.runs)" bash scripts/gpu_train.sh       # fine-tunes
#
# RUNS: one training per line, "NAME PRESET [extra train options...]" (the extra options follow the defaults below,
# so they override them: --init-from, --lr, targets, --batch ...). Without RUNS: one from-scratch run per preset in
# PRESETS, named after the preset.
# DATA: a folder of photos (the 45 of ../shared/photos, copied into the repository as an ignored folder so they
# travel with it). A .whl folder, if present, holds wheels the GPU machine lacks (kornia for the differentiable JPEG).
set -u
DATA=${DATA:-.gpu_photos}
MINUTES=${MINUTES:-7}
OUT=${OUT:-/tmp/gpu-out}
PRESETS=${PRESETS:-fast small paper}
RUNS=${RUNS:-$(for p in $PRESETS; do echo "$p $p"; done)}
# 256 px: the size the batch job runs the network at. At 128 px crops `small` and `paper` lost 2.6-4.1 dB of held-out
# secret at 256 px in the last third of their schedule (docs/history.md, the lent-GPU sessions).
CROP=${CROP:-256}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-4}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" runs

if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; "$PY" -c \
    "import torch, kornia; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'kornia', kornia.__version__)"
} | tee "$OUT/machine.txt"

names=()
while read -r name preset extra; do
    [ -z "$name" ] && continue
    names+=("$name")
    # $extra is split on purpose: it holds several options.
    # shellcheck disable=SC2086
    "$PY" -m pipeline train --data "$DATA" --out "runs/gpu-$name" --config "$preset" --light-score \
        --crop "$CROP" --batch "$BATCH" --minutes "$MINUTES" --attack-mix job --cover-psnr-target 37.0 \
        --ssim-target 0.955 --val-every 500 --device "$DEVICE" --threads "$THREADS" $extra \
        >"runs/gpu-$name.log" 2>&1 &
done <<<"$RUNS"
wait

# One archive per run (checkpoints with the training state, logs, curves): the device tool brings back at most 8 files.
for name in "${names[@]}"; do
    tail -c 600 "runs/gpu-$name.log"; echo
    tar -czf "$OUT/$name.tar.gz" "runs/gpu-$name.log" $(ls runs/gpu-"$name"/{best.pt,model.pt,last.pt,train_log.parquet,\
val_log.parquet,curves.png,train_config.json} 2>/dev/null)
done
ls -la "$OUT"
