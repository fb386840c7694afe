"""sris-pipeline: robust deep image steganography (SRIS-Net) as a batch pipeline.

Public API::

    from pipeline import load_model
    model = load_model()            # the shipped default model; or load_model("runs/x/best.pt")
    with torch.inference_mode():
        stego = model.embed(cover, secrets)   # (B, C, N, N), (B, K*C, N, N) float in [0, 1]
        recovered = model.reveal(stego)       # (B, K*C, N, N)
"""

from pipeline.model.checkpoint import load_model

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]
