"""Reading a photo set (training data, held-out photos, an evaluation set): every image of a folder, or every image
member of the WebDataset shards there (local or ``s3://``), by name; ``load_photos`` also decodes and splits them
(``pipeline.core.photos``)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.core.photos import decode_photo, is_validation
from pipeline.io.tar_reader import iter_image_members

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_photos(source: str) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) for every image in a folder, or every image member of the WebDataset shards there."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return [(p.name, p.read_bytes()) for p in files]
    return [(key, data) for key, data in iter_image_members(source)]


def load_photos(
    source: str, channels: int = 3, val_fraction: float = 0.2, max_side: int = 1024
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str], list[str]]:
    """Decode all photos; returns (train images, validation images, train names, validation names)."""
    train, val, train_names, val_names = [], [], [], []
    for name, data in list_photos(source):
        try:
            img = decode_photo(data, channels, max_side)
        except Exception as exc:  # a broken photo must not stop training; say which one
            print(f"skipping {name}: {exc}")
            continue
        if is_validation(name, val_fraction):
            val.append(img)
            val_names.append(name)
        else:
            train.append(img)
            train_names.append(name)
    if not train:
        raise ValueError(f"no training photos found in {source}")
    return train, val, train_names, val_names
