"""The cover a block-DCT thumbnail code pays for surviving published images: measured trade-off curves.

No network is involved: each variant writes the secret's 8x8 block means into block-DCT coefficients of the cover by
informed embedding (the cover's own value of the coefficient is replaced, as ``ThumbnailWriter`` does), the stego is
rounded to 8 bits, published (JPEG, WebP, resize), and the coefficients are read back; the gain a distortion applied
to each coefficient is undone exactly (a bound on what the pilot's estimate gives). The secret comes back as the
bilinear upsampling of the means it read, so no figure can pass the means' own ceiling (printed first).

Variants (``VARIANTS``):
    rgb (2,3)       the shipped base code: each colour channel's mean in its own channel's coefficient (2, 3)
    luma high       all in the luma direction (R = G = B): the secret's opponent colours Y', O1, O2 in (2,3), (3,2),
                    (2,1), so chroma subsampling and chroma quantisation do not touch the code
    luma low        the same in lower frequencies, (1,2), (2,1), (2,2): smaller JPEG steps, more cover to cancel

    python research/code_tradeoff.py --data PHOTOS [--out docs/evaluation/code_tradeoff.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.core.distortions import jpeg, quantize, resize, webp
from pipeline.core.metrics import psnr
from pipeline.core.photos import square_crops
from pipeline.io.photos import load_photos
from pipeline.model.codes.thumbnail import dct_basis

BLOCK = 8
# Orthonormal opponent colour transform (rows): Y' = (R + G + B) / sqrt(3), O1 = (R - B) / sqrt(2), O2 = (R - 2G + B)
# / sqrt(6); its inverse is its transpose.
OPPONENT = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]])
OPPONENT = OPPONENT / OPPONENT.norm(dim=1, keepdim=True)
LUMA = torch.ones(3) / 3**0.5
EYE = torch.eye(3)
# Per variant, one slot per secret component: (coefficient (u, v), the cover's colour direction it is written in).
# Component i of the secret is channel i (rgb) or opponent colour i (luma).
VARIANTS = {
    "rgb (2,3)": (EYE, [((2, 3), EYE[0]), ((2, 3), EYE[1]), ((2, 3), EYE[2])]),
    "luma high": (OPPONENT, [((2, 3), LUMA), ((3, 2), LUMA), ((2, 1), LUMA)]),
    "luma low": (OPPONENT, [((1, 2), LUMA), ((2, 1), LUMA), ((2, 2), LUMA)]),
}
CONDITIONS = {
    "clean": lambda x: x,
    "jpeg90": lambda x: jpeg(x, 90),
    "jpeg75": lambda x: jpeg(x, 75),
    "jpeg50": lambda x: jpeg(x, 50),
    "webp80": lambda x: webp(x, 80),
    "resize0.5": lambda x: resize(x, 0.5),
}
AMPLITUDES = (4.0, 6.0, 8.0, 10.0, 14.0, 20.0, 28.0)


def coefficients(x: torch.Tensor, uv: tuple[int, int], direction: torch.Tensor) -> torch.Tensor:
    """(B, 3, N, N) -> (B, 1, N/8, N/8): each block's coefficient ``uv`` of the image projected on ``direction``."""
    basis = dct_basis(*uv, BLOCK)[None, None]
    return F.conv2d(torch.einsum("c,bchw->bhw", direction, x)[:, None], basis, stride=BLOCK)


def embed(covers: torch.Tensor, means: torch.Tensor, variant: str, amplitude: float) -> torch.Tensor:
    """Write ``means`` (B, 3, N/8, N/8) minus 0.5 in the variant's slots at ``amplitude`` grey levels per unit."""
    colour, slots = VARIANTS[variant]
    values = torch.einsum("ij,bjhw->bihw", colour, means - 0.5) * (BLOCK * amplitude / 255)
    stego = covers.clone()
    for i, (uv, direction) in enumerate(slots):
        delta = values[:, i : i + 1] - coefficients(covers, uv, direction)
        pattern = F.conv_transpose2d(delta, dct_basis(*uv, BLOCK)[None, None], stride=BLOCK)
        stego = stego + pattern * direction[None, :, None, None]
    return quantize(stego.clamp(0, 1))


def read(stego: torch.Tensor, means: torch.Tensor, variant: str, amplitude: float) -> torch.Tensor:
    """The means (B, 3, N/8, N/8) read back, each slot's gain undone by least squares against the truth."""
    colour, slots = VARIANTS[variant]
    truth = torch.einsum("ij,bjhw->bihw", colour, means - 0.5) * (BLOCK * amplitude / 255)
    values = []
    for i, (uv, direction) in enumerate(slots):
        y, t = coefficients(stego, uv, direction), truth[:, i : i + 1]
        gain = (y * t).sum(dim=(1, 2, 3), keepdim=True) / (t * t).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-9)
        values.append(y / gain.clamp_min(0.05))
    return torch.einsum("ji,bjhw->bihw", colour, torch.cat(values, 1)) / (BLOCK * amplitude / 255) + 0.5


def upsampled(means: torch.Tensor) -> torch.Tensor:
    return F.interpolate(means, scale_factor=BLOCK, mode="bilinear", align_corners=False).clamp(0, 1)


def measure(covers: torch.Tensor, secrets: torch.Tensor) -> list[dict]:
    means = F.avg_pool2d(secrets, BLOCK)
    rows = []
    runs = [(v, a) for v in VARIANTS for a in AMPLITUDES]
    for variant, amp in tqdm(runs, desc="variant x amplitude", unit="run"):
        stego = embed(covers, means, variant, amp)
        row = {"variant": variant, "amplitude": amp, "cover psnr": psnr(stego * 255, covers * 255).mean().item()}
        for name, attack in CONDITIONS.items():
            revealed = upsampled(read(attack(stego), means, variant, amp))
            row[name] = psnr(revealed * 255, secrets * 255).mean().item()
        rows.append(row)
    return rows


def plot(rows: list[dict], ceiling: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("jpeg90", "jpeg75", "jpeg50", "resize0.5")
    bars = {"jpeg90": 25.0, "jpeg75": 23.0, "jpeg50": 20.0, "resize0.5": 24.0}
    fig, axes = plt.subplots(1, len(shown), figsize=(14, 3.8), sharey=True)
    for ax, cond in zip(axes, shown, strict=True):
        for variant in VARIANTS:
            pts = sorted((r["cover psnr"], r[cond]) for r in rows if r["variant"] == variant)
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=variant)
        ax.axhline(bars[cond], color="tab:red", lw=0.8, ls="--", label="bar")
        ax.axhline(ceiling, color="grey", lw=0.8, ls=":", label="8x8 means' ceiling")
        ax.axvline(36.0, color="black", lw=0.6, ls=":")
        ax.set_title(cond)
        ax.set_xlabel("cover PSNR (dB)")
    axes[0].set_ylabel("secret PSNR, code alone (dB)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of photos (all of them: nothing here is trained)")
    ap.add_argument("--crops", type=int, default=2, help="random crops per photo")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/evaluation/code_tradeoff.md", help="Markdown; Parquet and PNG beside it")
    args = ap.parse_args()
    train, val, _, _ = load_photos(args.data, 3, 0.2)
    covers = square_crops(train + val, args.crops, args.size, args.seed)
    secrets = covers.roll(1, dims=0)
    ceiling = psnr(upsampled(F.avg_pool2d(secrets, BLOCK)) * 255, secrets * 255).mean().item()
    rows = measure(covers, secrets)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out.with_suffix(".parquet"))
    plot(rows, ceiling, out.with_suffix(".png"))
    names = ["cover psnr", *CONDITIONS]
    lines = [
        "# The cover a block-DCT code pays for published images",
        "",
        f"`python research/code_tradeoff.py --data PHOTOS` ({len(covers)} crops of {args.size} px, photo i hides photo"
        f" i+1; the code alone, no network). The secret's 8x8 means, upsampled, reach {ceiling:.2f} dB at best.",
        "",
        "| variant | amplitude | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    lines += [
        f"| {r['variant']} | {r['amplitude']:g} | " + " | ".join(f"{r[n]:.2f}" for n in names) + " |" for r in rows
    ]
    lines += ["", "![trade-off](code_tradeoff.png)", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
