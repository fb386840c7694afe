# GPU image of sris-pipeline on NVIDIA's NGC PyTorch container, which ships CUDA, cuDNN, TensorRT, torch-tensorrt and
# DALI built for its own torch. It cannot be built on the project's CPU-only machines; on a GPU host (docs/gpu.md):
#   docker build -t sris-pipeline:gpu .
#   docker run --rm --gpus all --ipc=host -v sris-engines:/opt/sris-pipeline/engines -v "$PWD/data:/data" \
#       sris-pipeline:gpu embed --shards /data/in --out /data/out --secret /data/logo.png
#
# The base is pinned to one monthly release: torch, TensorRT, torch-tensorrt and DALI move together with the tag, and
# TensorRT engines are tied to the TensorRT version, so changing the tag means rebuilding the engines (the entry
# point does it). Pin the digest too for a reproducible build:
#   docker build --build-arg BASE_IMAGE=nvcr.io/nvidia/pytorch:25.10-py3@sha256:<digest> -t sris-pipeline:gpu .
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.10-py3
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/sris-pipeline

# Dependencies first (a layer that survives code changes): pyproject.toml's, less what the base image provides
# (docker/requirements.py): torch, torch-tensorrt and DALI must stay NVIDIA's builds. The base image's pip constraint
# file (/etc/pip/constraint.txt, honoured by pip there) pins every package it ships, so nothing installed here
# replaces them; a requirement that conflicts with a pinned version fails the build instead.
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/requirements.py
RUN python docker/requirements.py pyproject.toml > /tmp/requirements.txt \
 && python -m pip install -r /tmp/requirements.txt

# The package itself, without dependencies (they are above) and without build isolation (the base image's setuptools
# builds it; an isolated build would resolve setuptools against the constraint file). setup.py compiles its four C
# parts with the base image's gcc; the check below fails the build where one is missing.
COPY pipeline ./pipeline
COPY build_engines.py setup.py ./
RUN python -m pip install --no-deps --no-build-isolation . \
 && python -c "import pipeline, torch; print('sris-pipeline', pipeline.__version__, 'torch', torch.__version__)" \
 && python -c "from pipeline.model.digital import _blockwrite, _minsum; from pipeline.core import _ssim; from pipeline.io import _png"

COPY docker/entrypoint.sh /usr/local/bin/sris-entrypoint
RUN chmod 0755 /usr/local/bin/sris-entrypoint

# Engines are built on the machine that runs them (they are tied to the GPU architecture and the TensorRT version):
# mount a volume on this folder to keep them between containers. It is the jobs' default --engines-dir (engines,
# relative to the working directory).
RUN mkdir -p /opt/sris-pipeline/engines

# NVIDIA's entry point first (driver checks and CUDA forward-compatibility setup, then its banner), then ours: it
# builds missing or stale engines for the commands that use them and runs `python -m pipeline "$@"`.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "sris-entrypoint"]
CMD ["--help"]
