"""The Python API as a new user meets it: ``load_model`` in any torch mode, any image size, the README's snippet."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import load_model

REPO = Path(__file__).resolve().parents[1]


def test_a_model_loaded_in_inference_mode_reveals_outside_it() -> None:
    """Loaded inside ``torch.inference_mode()`` (a natural first try), the weights were inference tensors and
    reveal, run outside that mode, failed with "Inference tensors cannot be saved for backward"; so did a reveal
    outside it after one inside (registration's cached sign bank was made in inference mode)."""
    from pipeline.model.codes import register

    register._sign_bank.cache_clear()  # as in a fresh process
    with torch.inference_mode():
        model = load_model("k1")
        model.reveal(torch.rand(1, 3, 64, 64))  # registration's tables are made here, in inference mode
    g = torch.Generator().manual_seed(0)
    cover, secret = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    stego = model.embed(cover, secret)
    revealed = model.reveal(stego)
    assert revealed.shape == secret.shape and torch.isfinite(revealed).all()
    with torch.inference_mode():  # and inside it, the same numbers
        assert torch.equal(model.reveal(stego), revealed)


def test_any_image_size_is_padded_and_cropped_back(photo_factory) -> None:
    """A 250 px image (not a multiple of the model's 8) embeds and reveals at its own size; it failed deep inside
    ``pixel_unshuffle`` with a raw message."""
    model = load_model("k1")

    def tensor(seed: int) -> torch.Tensor:
        return torch.from_numpy(photo_factory(250, 250, seed)).permute(2, 0, 1)[None].float() / 255

    cover, secret = tensor(1), tensor(2)
    with torch.inference_mode():
        stego = (model.embed(cover, secret) * 255).round() / 255
        revealed = model.reveal(stego)
        secrets2, _ = model.reveal_and_detect(stego)
    assert stego.shape == cover.shape and revealed.shape == secret.shape and torch.equal(secrets2, revealed)
    psnr = lambda a, b: (10 * torch.log10(1 / (a - b).square().mean())).item()  # noqa: E731
    assert psnr(stego, cover) > 33 and psnr(revealed, secret) > 24  # as at 256 px (37 and 30 dB on this pair)


def _readme_python_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]


def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, photo_factory) -> None:
    """The README's snippet, extracted and run with its inputs made (a photo and a logo of other sizes)."""
    from PIL import Image

    Image.fromarray(photo_factory(300, 400, 3)).save(tmp_path / "cover.jpg", quality=95)
    Image.fromarray(photo_factory(128, 128, 4)).save(tmp_path / "logo.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_readme_python_block(), "README.md", "exec"), scope)  # the project's own README
    assert scope["stego"].shape == (1, 3, 300, 400) and scope["recovered"].shape == (1, 3, 300, 400)
