#!/usr/bin/env bash
# Build the TensorRT/ONNX engines for the shipped model when they are missing or stale, then run the pipeline CLI.
set -euo pipefail
ENGINES="${SRIS_ENGINES_DIR:-/opt/sris-pipeline/engines}"
if ! python -m pipeline engines --check --engines-dir "$ENGINES" >/dev/null 2>&1; then
  echo "sris-pipeline: building engines in $ENGINES (first start, new GPU or new model)" >&2
  python /opt/sris-pipeline/build_engines.py --targets onnx,tensorrt --out "$ENGINES"
fi
exec python -m pipeline "$@"
