#!/usr/bin/env python
"""Build the engines of a checkpoint: ONNX, OpenVINO IR and TensorRT FP16 (where CUDA and TensorRT exist).

    python build_engines.py [--checkpoint PATH] [--size 256] [--targets onnx,openvino,tensorrt]
                            [--precision fp32,bf16,fp16] [--out engines/]

The same command as ``python -m pipeline build-engines``; ``python -m pipeline engines`` lists the result.
"""

from pipeline.runtime.cli import build_engines

if __name__ == "__main__":
    build_engines(prog_name="build_engines.py")
