"""Make the sample shards and secret image shipped in pipeline/samples/ (see its README for sources/licences).

    python tests/make_samples.py [--out pipeline/samples]      # needs scikit-image (the test extras)

Cover photos come from scikit-image's bundled data (astronaut: public domain, NASA; coffee and chelsea: CC0; rocket:
public domain), downscaled. The secret is drawn here (synthetic). Output is deterministic: same bytes every run.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

LONG_SIDE = 320
MTIME = 1_700_000_000  # fixed, so the tar bytes do not change between runs


def downscale(img: np.ndarray, long_side: int = LONG_SIDE) -> Image.Image:
    im = Image.fromarray(img)
    scale = long_side / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)


def jpeg(im: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def secret_image(size: int = 256) -> Image.Image:
    """A synthetic logo-like picture: colour rings, a diagonal band and a checker corner (easy to judge by eye)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.hypot(yy - 0.5, xx - 0.5)
    img = np.zeros((size, size, 3), np.float32)
    img[..., 0] = 0.5 + 0.5 * np.cos(r * 40)
    img[..., 1] = np.clip(1.2 - 2 * r, 0, 1)
    img[..., 2] = xx
    band = np.abs(yy - xx) < 0.06
    img[band] = (1.0, 0.85, 0.1)
    checker = ((yy * 16).astype(int) + (xx * 16).astype(int)) % 2 == 0
    corner = (yy < 0.25) & (xx > 0.75)
    img[corner] = np.where(checker[corner, None], 1.0, 0.05)
    return Image.fromarray((img * 255).round().astype(np.uint8))


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), MTIME, 0o644, "", ""
            tf.addfile(ti, io.BytesIO(data))


def make_samples(out: Path) -> list[Path]:
    """Write ``out/shards/shard-000000.tar``, ``out/shards/shard-000001.tar`` and ``out/secret.png``."""
    from skimage import data

    (out / "shards").mkdir(parents=True, exist_ok=True)
    astronaut, coffee, chelsea, rocket = (
        downscale(f()) for f in (data.astronaut, data.coffee, data.chelsea, data.rocket)
    )
    write_tar(
        out / "shards" / "shard-000000.tar",
        [("astronaut.jpg", jpeg(astronaut)), ("coffee.jpg", jpeg(coffee)), ("chelsea.jpg", jpeg(chelsea))],
    )
    # The second shard shows other input modes: a rocket photo, a grayscale crop, and a PNG with an alpha channel
    # (kept aside during embedding and put back unchanged).
    gray = coffee.convert("L").crop((40, 20, 280, 200))
    rgba = chelsea.copy()
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, rgba.width // 6, rgba.height))  # a transparent strip on the left
    rgba.putalpha(alpha)
    write_tar(
        out / "shards" / "shard-000001.tar",
        [("rocket.jpg", jpeg(rocket)), ("coffee-gray.jpg", jpeg(gray)), ("chelsea-alpha.png", png(rgba))],
    )
    (out / "secret.png").write_bytes(png(secret_image()))
    return [out / "shards" / "shard-000000.tar", out / "shards" / "shard-000001.tar", out / "secret.png"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "pipeline" / "samples"))
    files = make_samples(Path(ap.parse_args().out))
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {', '.join(map(str, files))} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
