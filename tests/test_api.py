"""The Python API as a new user meets it: ``load_model`` in any torch mode, any image size, the README's snippet."""

from __future__ import annotations

import torch

from pipeline import load_model


def test_a_model_loaded_in_inference_mode_reveals_outside_it() -> None:
    """Loaded inside ``torch.inference_mode()`` (a natural first try), the weights were inference tensors and
    reveal, run outside that mode, failed with "Inference tensors cannot be saved for backward"."""
    with torch.inference_mode():
        model = load_model("k1")
    g = torch.Generator().manual_seed(0)
    cover, secret = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    stego = model.embed(cover, secret)
    revealed = model.reveal(stego)
    assert revealed.shape == secret.shape and torch.isfinite(revealed).all()
    with torch.inference_mode():  # and inside it, the same numbers
        assert torch.equal(model.reveal(stego), revealed)
