"""Distortions between embedding and revealing, shared by training and evaluation.

All take and return (B, C, H, W) float images in [0, 1] of the same shape. The filters, noise and resampling are
differentiable torch code, so the same definitions serve training (JPEG through kornia's differentiable codec,
``jpeg_differentiable``) and evaluation. ``jpeg``, ``webp`` and ``resize`` go through real 8-bit codecs (Pillow's
libjpeg and libwebp, OpenCV's resize): evaluation only. ``quantize`` is the 8-bit rounding every saved image goes
through, with a straight-through gradient.

The paper gives no attack parameters; ours: mean filter 3x3; Gaussian filter 3x3 of sigma 1 (also 0.5 and 2);
sharpening with [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]; Gaussian noise of sigma 1, 5 and 10 on the 0-255 scale; a
horizontal flip (the receiver gets the flipped image as it is); JPEG quality 90 and 75.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

SHARPEN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Value of ``y``, gradient of ``x``."""
    return x + (y - x).detach()


def clamp_st(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] with a straight-through gradient (a hard clamp kills the gradient outside the range)."""
    return straight_through(x, x.clamp(0, 1))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits, with a straight-through gradient (the image as saved)."""
    return straight_through(x, (x.clamp(0, 1) * 255).round() / 255)


def filter_image(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of (B, C, H, W) filtered with the 2-D ``kernel`` (k, k), same size out."""
    c = x.shape[1]
    k = kernel.to(x.device, x.dtype)
    pad = k.shape[-1] // 2
    # Reflect-101 padding: what OpenCV's blur / GaussianBlur / filter2D do by default.
    return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), k.expand(c, 1, *k.shape), groups=c)


def mean_filter(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    return filter_image(x, torch.full((size, size), 1.0 / size**2))


def gaussian_kernel(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()


def gaussian_filter(x: torch.Tensor, sigma: float = 1.0, size: int = 3) -> torch.Tensor:
    return filter_image(x, gaussian_kernel(size, sigma))


def sharpen(x: torch.Tensor) -> torch.Tensor:
    return filter_image(x, SHARPEN).clamp(0, 1)


def gaussian_noise(x: torch.Tensor, sigma255: float = 5.0, generator: torch.Generator | None = None) -> torch.Tensor:
    # Drawn on the generator's device, then moved: a seeded CPU generator gives the same noise on every device.
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return (x + noise * (sigma255 / 255.0)).clamp(0, 1)


def rescale(x: torch.Tensor, factor: float = 4.0) -> torch.Tensor:
    """What the batch job does to the residual of an image larger than the network's size: upsampled bilinearly to
    full resolution, then resized back down (antialiased bilinear) by verify/extract; together a mild blur of the
    code. Training applies it to the residual only (stego - cover), as the job does."""
    h, w = x.shape[-2:]
    up = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return F.interpolate(up, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def shrink(x: torch.Tensor, factor: float = 0.5) -> torch.Tensor:
    """A published image's resize: down by ``factor`` < 1 (antialiased bilinear, close to OpenCV's INTER_AREA) and
    back up to the original size (bilinear), differentiable."""
    h, w = x.shape[-2:]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    down = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)


def hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def jpeg_differentiable(x: torch.Tensor, quality: float = 75.0) -> torch.Tensor:
    """Kornia's differentiable JPEG (RGB only; H, W padded to multiples of 16 and cropped back)."""
    from kornia.enhance import jpeg_codec_differentiable

    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    q = torch.tensor([float(quality)], device=x.device, dtype=x.dtype)
    return jpeg_codec_differentiable(xp, q)[..., :h, :w].clamp(0, 1)


def _u8_images(x: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) float in [0, 1] -> B uint8 arrays (H, W, C): the image as saved before it is published."""
    return [a.copy() for a in (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()]


def _from_u8(arrs: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    out = torch.stack([torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in arrs])
    return out.to(like.device, like.dtype) / 255.0


def jpeg(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """A real JPEG round trip through Pillow (libjpeg) at ``quality``, with the 4:2:0 chroma subsampling Pillow
    defaults to, decoded back; not differentiable (``jpeg_differentiable`` is training's)."""
    from PIL import Image

    out = []
    for img in x.detach().cpu():
        arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        mode = "L" if arr.shape[2] == 1 else "RGB"
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(mode))
        dec = dec[..., None] if dec.ndim == 2 else dec
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype) / 255.0


def webp(x: torch.Tensor, quality: int = 80) -> torch.Tensor:
    """Pillow WebP, lossy at ``quality`` (libwebp's defaults otherwise), decoded back. One-channel images are saved
    as RGB (WebP has no grey mode) and read back as grey."""
    from PIL import Image

    out = []
    for arr in _u8_images(x):
        grey = arr.shape[2] == 1
        img = Image.fromarray(arr[..., 0], "L") if grey else Image.fromarray(arr, "RGB")
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="WEBP", quality=quality, lossless=False)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if grey else "RGB"))
        out.append(dec[..., None] if grey else dec)
    return _from_u8(out, x)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """OpenCV ``INTER_AREA`` down to ``factor`` of the size (rounded, at least 1 px; the published image, 8-bit),
    then ``INTER_LINEAR`` back up to the original size (what the receiver does before revealing), 8-bit."""
    import cv2

    h, w = x.shape[-2:]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))  # cv2's dsize is (width, height)
    out = []
    for arr in _u8_images(x):
        down = cv2.resize(arr, small, interpolation=cv2.INTER_AREA)
        up = cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(up.reshape(h, w, arr.shape[2]))  # cv2 drops a single channel's axis
    return _from_u8(out, x)


def shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """Drop ``k`` rows at the top and ``k`` columns at the left (a crop), then reflect-pad (reflect-101, as
    ``torch``'s and OpenCV's default reflection) ``k`` rows at the bottom and ``k`` columns at the right back to
    the original size: ``shift(x, k)[..., :H-k, :W-k] == x[..., k:, k:]``, the content moved up-left by ``k``."""
    if k == 0:
        return x
    return F.pad(x[..., k:, k:], (0, k, 0, k), mode="reflect")


def crop(x: torch.Tensor, keep: float, seed: int = 0) -> torch.Tensor:
    """Keep ``keep`` of each side at a random offset (one seeded draw per image), then resize back to the original
    size with OpenCV's bilinear resize (the receiver's resample), 8-bit: a published crop."""
    import random

    import cv2

    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    rng = random.Random(seed)
    out = []
    for arr in _u8_images(x):
        y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
        back = cv2.resize(arr[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(back.reshape(h, w, arr.shape[2]))
    return _from_u8(out, x)
