# GPU image: NVIDIA NGC PyTorch ships CUDA, cuDNN, TensorRT, torch-tensorrt and DALI matched to its torch.
# It cannot be built on the project's CPU-only machines; build and run it on a GPU host:
#   docker build -t sris-pipeline:gpu .
#   docker run --gpus all --rm -v $PWD/data:/data sris-pipeline:gpu embed --shards /data/in --out /data/out --secret /data/logo.png
FROM nvcr.io/nvidia/pytorch:25.10-py3

WORKDIR /opt/sris-pipeline
COPY pyproject.toml README.md build_engines.py ./
COPY pipeline ./pipeline
COPY docker/entrypoint.sh /usr/local/bin/sris-entrypoint

# --no-deps: the base image's torch, torch-tensorrt and DALI must not be replaced by PyPI builds.
RUN python -m pip install --no-cache-dir --no-deps -e . \
 && python -m pip install --no-cache-dir click pyarrow tqdm simplejpeg kornia fsspec s3fs onnx onnxruntime openvino \
 && chmod +x /usr/local/bin/sris-entrypoint

ENV SRIS_ENGINES_DIR=/opt/sris-pipeline/engines
# Engines are tied to the GPU architecture and TensorRT version, so they are built on the machine that runs them:
# the entry point (re)builds them when missing or stale, then runs `python -m pipeline "$@"`.
ENTRYPOINT ["sris-entrypoint"]
CMD ["--help"]
