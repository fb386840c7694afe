"""sris-pipeline: robust deep image steganography (SRIS-Net) as a batch pipeline.

Public API::

    from pipeline import load_model
    model = load_model()            # the shipped default model; or load_model("runs/x/best.pt")
    with torch.inference_mode():
        stego = model.embed(cover, secrets)   # (B, C, N, N), (B, K*C, N, N) float in [0, 1]
        recovered = model.reveal(stego)       # (B, K*C, N, N)
"""

import time
from typing import Any

__version__ = "0.1.0"
# When the package was first imported: a job's start-up (its summary, its manifest) counts from here, imports
# included.
IMPORTED_AT = time.perf_counter()
__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # Lazy: importing a light module of the package (the LDPC decoder's worker process imports the channel code)
    # must not import torch.
    if name == "load_model":
        from pipeline.model.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
