"""The synthetic graphics drawn as watermark-like training and validation secrets (``pipeline/train/graphics.py``)."""

from __future__ import annotations

import pytest
import torch

from pipeline.train.graphics import GraphicsSampler


def test_graphics_are_8bit_images_of_the_asked_size() -> None:
    batch = GraphicsSampler(48, seed=0).batch(6)
    assert batch.shape == (6, 3, 48, 48) and batch.dtype == torch.float32
    assert batch.min() >= 0 and batch.max() <= 1
    assert torch.equal(batch * 255, (batch * 255).round())
    assert GraphicsSampler(32, channels=1, seed=0).batch(2).shape == (2, 1, 32, 32)


def test_the_seed_decides_the_images() -> None:
    assert torch.equal(GraphicsSampler(32, seed=5).batch(4), GraphicsSampler(32, seed=5).batch(4))
    assert not torch.equal(GraphicsSampler(32, seed=5).batch(4), GraphicsSampler(32, seed=6).batch(4))


def test_graphics_are_varied_and_hard_edged() -> None:
    """Not photos: flat regions with sharp edges, saturated colours, and no two images alike."""
    batch = GraphicsSampler(64, seed=1).batch(32)
    flat = batch.flatten(1)
    assert (torch.cdist(flat, flat) + torch.eye(32) * 1e9).min() > 1.0  # pairwise distinct
    saturated = ((batch < 0.1) | (batch > 0.9)).float().mean()
    assert saturated > 0.2
    steps = (batch[..., 1:] - batch[..., :-1]).abs().flatten()
    assert (steps == 0).float().mean() > 0.3 and (steps > 0.3).any()  # flat areas and hard edges


def test_graphics_are_drawn_on_the_given_device() -> None:
    assert GraphicsSampler(16, seed=0, device="meta").batch(2).device.type == "meta"


def test_too_small_a_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 8 px"):
        GraphicsSampler(4)


def test_logo_like_layers_draw_thin_lines_and_words() -> None:
    """The watermark-like kinds: lines 1-3 px wide at 256 px, and a word that covers a small part of the frame."""
    from pipeline.train.graphics import GraphicsSampler

    g = GraphicsSampler(256, seed=3)
    lines = g._mask("lines")
    widths = lines.sum(dim=1)  # pixels per row that a line covers: a few per line, not a band
    assert 0 < lines.mean() < 0.06 and widths.max() < 60
    words = [g._mask("text") for _ in range(6)]
    assert all(0 < w.mean() < 0.25 for w in words[:1]) and sum(w.sum() > 0 for w in words) >= 4
