"""A before/after crop of the flattest region of the photos (a clear sky, a wall): is the code's block pattern visible?

For every photo (256 px centre square, as validation sees it), the shipped model hides a logo-like graphic (the
``validate --graphics-secrets`` kind); the crop is the ``--crop`` px window with the least local variation in the cover
over all photos, leaving out windows with clipped pixels. The figure shows the cover, the stego and their difference
x10 at 100% (one image pixel per screen pixel) and enlarged x3 (nearest neighbour), with the crop's PSNR and the
whole stego's in the title. With ``--job-out``, the same for the full-size job: the photo with the flattest window
goes through ``python -m pipeline embed`` at its own size (the layer is written on the network's grid and carried to
full size), and the figure shows that photo's flattest window; the PSNR over its flat 8x8 blocks (cover luma
standard deviation under 1.5 grey levels) is printed and written beside the figure (``.json``).

    python research/flat_crop.py --data PHOTOS [--checkpoint CKPT] [--out docs/evaluation/flat_crop.png]
        [--job-out docs/evaluation/flat_crop_job.png]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from pipeline.core.metrics import psnr, psnr_flat, to_255
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


def job_stego(photo: np.ndarray, secret: np.ndarray, checkpoint: str | None) -> np.ndarray:
    """(H, W, 3) uint8 photo -> the stego the embed job writes for it at full size, hiding ``secret``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        with tarfile.open(root / "in" / "shard-000000.tar", "w") as tf:
            buf = io.BytesIO()
            Image.fromarray(photo).save(buf, format="PNG")
            info = tarfile.TarInfo("photo.png")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
        Image.fromarray(secret).save(root / "secret.png")
        cmd = [sys.executable, "-m", "pipeline", "embed", "--shards", str(root / "in"), "--out", str(root / "out"),
               "--secret", str(root / "secret.png"), "--backend", "torch", "--no-progress"]  # fmt: skip
        subprocess.run(cmd + (["--checkpoint", checkpoint] if checkpoint else []), check=True, capture_output=True)
        with tarfile.open(root / "out" / "shard-000000.tar") as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith(".png"))
            return np.asarray(Image.open(tf.extractfile(member)).convert("RGB"))


def job_figure(photo: np.ndarray, secret: np.ndarray, checkpoint: str | None, window: tuple[int, int, int], out: str):
    """The full-size job's before/after crop of ``photo`` at ``window`` (top, left, side on the 256 px centre
    square, mapped to full size), and the whole photo's flat-block PSNR."""
    stego = job_stego(photo, secret, checkpoint)
    c = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    s = torch.from_numpy(stego).permute(2, 0, 1)[None].float()
    h, w = photo.shape[:2]
    scale = min(h, w) / 256
    top = round((h - min(h, w)) // 2 + window[0] * scale)
    left = round((w - min(h, w)) // 2 + window[1] * scale)
    crop = round(window[2] * scale)
    cw, sw = c[0, :, top : top + crop, left : left + crop], s[0, :, top : top + crop, left : left + crop]
    to_img = lambda t: t.permute(1, 2, 0).numpy().astype(np.uint8)  # noqa: E731
    diff = to_img((128 + 10 * (sw - cw)).clamp(0, 255))
    h8, w8 = 8 * (c.shape[-2] // 8), 8 * (c.shape[-1] // 8)
    flat = psnr_flat(s[..., :h8, :w8], c[..., :h8, :w8]).item()
    title = (
        f"full-size job ({w}x{h}), the same window ({crop} px at {top},{left}): crop "
        f"{psnr(sw[None], cw[None]).item():.1f} dB, flat blocks {flat:.1f} dB, whole {psnr(s, c).item():.1f} dB"
    )
    figure([("cover", to_img(cw)), ("stego", to_img(sw)), ("difference x10", diff)], title).save(out)
    whole = psnr(s, c).item()
    figures = {"command": "python research/flat_crop.py --data PHOTOS --job-out docs/evaluation/flat_crop_job.png",
               "width": w, "height": h, "psnr_cover_flat": flat, "psnr_cover": whole}  # fmt: skip
    Path(out).with_suffix(".json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"wrote {out}: full-size job, window ({top}, {left}), flat-block PSNR {flat:.2f} dB, whole {whole:.2f} dB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", help="Model file or shipped name [default: the shipped model].")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--out", default="docs/evaluation/flat_crop.png")
    ap.add_argument("--job-out", help="Also the full-size job's crop, written here.")
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
    flat = psnr_flat(stego[None], cover[None]).item()
    print(f"wrote {args.out}: photo {b} window ({top}, {left}), crop {crop_psnr:.2f} dB, stego {whole_psnr:.2f} dB, "
          f"flat blocks {flat:.2f} dB")  # fmt: skip
    if args.job_out:
        photo = (train_imgs + val_imgs)[b].permute(1, 2, 0).numpy()
        job_figure(photo, to_img(to_255(secrets[b, :3])), args.checkpoint, (top, left, args.crop), args.job_out)


if __name__ == "__main__":
    main()
