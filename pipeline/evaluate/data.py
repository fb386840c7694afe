"""Evaluation images: a folder of photos (or WebDataset shards), prepared exactly like the training validation set.

Each photo is decoded like the training data (``pipeline.core.photos.decode_photo``) and its centre square resized
to N (``center_square``); photo i hides photos i+1 .. i+K of the same set, cyclically (as ``validation_pairs`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.core.photos import center_square, cyclic_secrets, decode_photo, is_validation
from pipeline.io.photos import list_photos

SUBSETS = ("all", "validation", "train")


@dataclass
class EncodedPhotos:
    """The raw photos of the set, read once and decoded per channel count on demand."""

    names: list[str]
    data: list[bytes]
    skipped: list[str] = field(default_factory=list)  # "name: reason" for photos that could not be decoded
    _cache: dict = field(default_factory=dict, repr=False)

    def images(self, channels: int, size: int) -> tuple[list[str], torch.Tensor]:
        """(names, covers (N, C, size, size) float in [0, 1], 8-bit values). Undecodable photos are skipped once."""
        key = (channels, size)
        if key not in self._cache:
            names, imgs = [], []
            for name, data in zip(self.names, self.data, strict=True):
                try:
                    img = decode_photo(data, channels)
                except Exception as exc:  # Pillow raises many types for a broken file; say which photo and go on
                    reason = f"{name}: {type(exc).__name__}: {exc}"
                    if reason not in self.skipped:
                        self.skipped.append(reason)
                    continue
                names.append(name)
                imgs.append(center_square(img, size))
            if len(imgs) < 2:
                raise ValueError(
                    f"evaluation needs at least 2 decodable photos (a cover and a secret), got {len(imgs)}"
                )
            self._cache[key] = (names, torch.stack(imgs))
        return self._cache[key]


def read_photos(source: str, subset: str = "all", val_fraction: float = 0.2, limit: int | None = None) -> EncodedPhotos:
    """Read the photo set; ``subset`` keeps the photos training held out (``validation``) or trained on (``train``),
    by the same stable name hash the training loop uses; ``limit`` keeps the first photos by name."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    if "://" not in source and not Path(source).exists():
        raise FileNotFoundError(f"data not found: {source}")
    try:
        items = list_photos(source)
    except FileNotFoundError:
        raise
    except (ImportError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read photos from {source}: {exc}") from exc
    items.sort(key=lambda item: item[0])
    if subset != "all":
        want = subset == "validation"
        items = [it for it in items if is_validation(it[0], val_fraction) == want]
    if limit is not None:
        items = items[:limit]
    if len(items) < 2:
        raise ValueError(f"found {len(items)} photo(s) in {source} (subset {subset}); evaluation needs at least 2")
    return EncodedPhotos([n for n, _ in items], [d for _, d in items])


def secrets_for(covers: torch.Tensor, num_secrets: int) -> torch.Tensor:
    """Photo i hides photos i+1 .. i+K (cyclically): (N, C, H, W) -> (N, K*C, H, W)."""
    n = len(covers)
    if n < num_secrets + 1:
        raise ValueError(f"{num_secrets} secrets per cover need at least {num_secrets + 1} photos, got {n}")
    return cyclic_secrets(covers, num_secrets)
