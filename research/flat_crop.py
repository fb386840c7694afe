"""A before/after crop of the flattest region of the photos (a clear sky, a wall): is the code's block pattern visible?

For every photo (256 px centre square, as validation sees it), the shipped model hides a logo-like graphic (the
``validate --graphics-secrets`` kind); the crop is the ``--crop`` px window with the least local variation in the cover
over all photos, leaving out windows with clipped pixels. The figure shows the cover, the stego and their difference
x10 at 100% (one image pixel per screen pixel) and enlarged x3 (nearest neighbour), with the crop's PSNR and the
whole stego's in the title.

    python research/flat_crop.py --data PHOTOS [--checkpoint CKPT] [--out docs/evaluation/flat_crop.png]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from pipeline.core.metrics import psnr, to_255
from pipeline.core.photos import validation_pairs
from pipeline.io.photos import load_photos
from pipeline.model import load_model
from pipeline.train.graphics import VALIDATION_SEED, GraphicsSampler


def flattest_window(covers: torch.Tensor, crop: int) -> tuple[int, int, int]:
    """(photo, top, left) of the ``crop`` x ``crop`` window with the least mean local gradient, on an 8 px grid,
    among windows with no clipped pixel (a blown-out white or black patch has nothing to hide a change in either
    direction, and is not what a viewer calls flat sky)."""
    grey = covers.mean(1, keepdim=True)
    grad = (grey[..., 1:, :-1] - grey[..., :-1, :-1]).abs() + (grey[..., :-1, 1:] - grey[..., :-1, :-1]).abs()
    busy = F.avg_pool2d(grad, crop, stride=8)  # (B, 1, h, w)
    clipped = ((covers <= 2 / 255) | (covers >= 253 / 255)).any(1, keepdim=True).float()[..., :-1, :-1]
    busy = busy + 1e3 * F.max_pool2d(clipped, crop, stride=8)
    flat = busy.flatten().argmin().item()
    b, rest = divmod(flat, busy.shape[-1] * busy.shape[-2])
    i, j = divmod(rest, busy.shape[-1])
    return b, 8 * i, 8 * j


def figure(panels: list[tuple[str, np.ndarray]], title: str, zoom: int = 3, gap: int = 12) -> Image.Image:
    """The panels side by side at 100% (one image pixel per pixel of the PNG) above the same enlarged ``zoom`` x."""
    n = panels[0][1].shape[0]
    width = len(panels) * (zoom * n + gap) + gap
    canvas = Image.new("RGB", (width, 36 + n + gap + zoom * n + gap), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 4), title, fill="black")
    for k, (label, img) in enumerate(panels):
        x = gap + k * (zoom * n + gap)
        draw.text((x, 20), label, fill="black")
        canvas.paste(Image.fromarray(img), (x, 36))
        canvas.paste(Image.fromarray(img).resize((zoom * n, zoom * n), Image.NEAREST), (x, 36 + n + gap))
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", help="Model file or shipped name [default: the shipped model].")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--out", default="docs/evaluation/flat_crop.png")
    args = ap.parse_args()
    model = load_model(args.checkpoint)
    train_imgs, val_imgs, _, _ = load_photos(args.data)
    covers, secrets = validation_pairs(train_imgs + val_imgs, 256, model.config.num_secrets)
    secrets = GraphicsSampler(256, 3, seed=VALIDATION_SEED).batch(secrets.shape[0] * model.config.num_secrets)
    secrets = secrets.reshape(covers.shape[0], -1, 256, 256)
    b, top, left = flattest_window(covers, args.crop)
    with torch.inference_mode():
        stego = to_255(model.embed(covers[b : b + 1], secrets[b : b + 1]))[0]
    cover = to_255(covers[b])
    window = (slice(None), slice(top, top + args.crop), slice(left, left + args.crop))
    c, s = cover[window], stego[window]
    to_img = lambda t: t.permute(1, 2, 0).numpy().astype(np.uint8)  # noqa: E731
    diff = to_img((128 + 10 * (s - c)).clamp(0, 255))
    crop_psnr = psnr(s[None], c[None]).item()
    whole_psnr = psnr(stego[None], cover[None]).item()
    panels = [("cover", to_img(c)), ("stego", to_img(s)), ("difference x10", diff)]
    title = (
        f"flattest unclipped {args.crop} px window of all photos (photo {b}, at {top},{left}), a logo hidden: "
        f"crop {crop_psnr:.1f} dB, whole stego {whole_psnr:.1f} dB. Top 100%, below x3."
    )
    figure(panels, title).save(args.out)
    print(f"wrote {args.out}: photo {b} window ({top}, {left}), crop {crop_psnr:.2f} dB, stego {whole_psnr:.2f} dB")


if __name__ == "__main__":
    main()
