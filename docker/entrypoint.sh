#!/usr/bin/env bash
# Entry point of the GPU image: make sure the engines of the model are built for this GPU, then run the pipeline CLI.
#
#   docker run --gpus all ... sris-pipeline:gpu embed --shards /data/in --out /data/out --secret /data/logo.png
#
# Engines are tied to the GPU architecture and the TensorRT version, so they are built where they run, into a folder
# that a volume can keep (SRIS_ENGINES_DIR). build_engines.py keeps an engine that is current and rebuilds one that is
# missing or stale (another checkpoint, another GPU architecture or TensorRT version, or a file changed since), so
# running it at every start costs a checkpoint hash when nothing changed.
#
# Settings (environment):
#   SRIS_BUILD_ENGINES   auto (default): before embed, extract and benchmark; always; never
#   SRIS_ENGINES_DIR     engines folder [/opt/sris-pipeline/engines: the jobs' default --engines-dir in the image's
#                        working directory; pass --engines-dir to the job when you change either]
#   SRIS_CHECKPOINT      checkpoint to build for [the shipped model]; pass the same --checkpoint to the job
#   SRIS_ENGINE_SIZE     image size N of the engines [256, the jobs' default --size]
#   SRIS_ENGINE_TARGETS  build_engines.py --targets [tensorrt,onnx: ONNX Runtime is the fallback without a GPU]
set -euo pipefail

APP=/opt/sris-pipeline
ENGINES="${SRIS_ENGINES_DIR:-$APP/engines}"
SIZE="${SRIS_ENGINE_SIZE:-256}"
TARGETS="${SRIS_ENGINE_TARGETS:-tensorrt,onnx}"
MODE="${SRIS_BUILD_ENGINES:-auto}"

wants_engines() {
  case "$MODE" in
    always) return 0 ;;
    never) return 1 ;;
    auto) case "${1:-}" in embed | extract | benchmark) return 0 ;; *) return 1 ;; esac ;;
    *)
      echo "sris-entrypoint: SRIS_BUILD_ENGINES must be auto, always or never, not '$MODE'" >&2
      exit 2
      ;;
  esac
}

if wants_engines "${1:-}"; then
  args=(--targets "$TARGETS" --size "$SIZE" --out "$ENGINES" --no-progress)
  if [[ -n "${SRIS_CHECKPOINT:-}" ]]; then
    args+=(--checkpoint "$SRIS_CHECKPOINT")
  fi
  echo "sris-entrypoint: checking engines in $ENGINES (size $SIZE, targets $TARGETS)" >&2
  # A failed build does not stop the command: the job builds a missing engine on first use, or refuses a stale one
  # with the command that rebuilds it, and says why.
  if ! python "$APP/build_engines.py" "${args[@]}" >&2; then
    echo "sris-entrypoint: engine build failed (see above); running the command anyway" >&2
  fi
fi

exec python -m pipeline "$@"
