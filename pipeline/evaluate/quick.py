"""A fast validation pass used during training and by ``model-card``: the figures of the quality bar.

The bar: on unseen photos at 256 px, 8-bit: cover PSNR >= 36 dB, SSIM >= 0.95, secret PSNR >= 28 dB
clean and >= 24 dB after each of mean 3x3, Gaussian 3x3 sigma 1, sharpen, noise sigma 5 and a horizontal flip.

Beside it, with ``published=True``, the published-image bar (issue 23, ``pipeline.evaluate.published``): the secret
PSNR after real JPEG, WebP, resizing and small shifts. It does not enter ``margin`` (the bar training ranks by);
``published_margin`` is its own.
"""

from __future__ import annotations

import torch

from pipeline.core import distortions as D
from pipeline.core.metrics import psnr, psnr_flat, ssim, to_255
from pipeline.evaluate import published as P

# A mean of per-image PSNRs counts an exact copy (a digital level's lossless graphic, an untouched flat block) as
# this many dB, not as infinity, which would swallow every other image of the mean.
EXACT_DB = 100.0


def mean_db(values: torch.Tensor) -> float:
    """The mean of per-image PSNRs (dB), an exact copy counted as ``EXACT_DB``; NaN (no such region) left out."""
    return values.clamp(max=EXACT_DB).nanmean().item()


BAR = {"psnr_cover": 36.0, "ssim_cover": 0.95, "psnr_secret": 28.0, "psnr_secret_attacked": 24.0}


def noise_draw(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Gaussian noise sigma 5/255, drawn from a seeded CPU generator: the same draw on every device and run."""
    return D.gaussian_noise(x, 5.0, torch.Generator().manual_seed(seed))


QUICK_ATTACKS = {
    "mean3": D.mean_filter,
    "gauss1": lambda x: D.gaussian_filter(x, 1.0),
    "sharpen": D.sharpen,
    "noise5": lambda x: noise_draw(x, 0),
    "hflip": D.hflip,
}


@torch.inference_mode()
def quick_validation(
    model: torch.nn.Module,
    covers: torch.Tensor,
    secrets: torch.Tensor,
    batch: int = 8,
    noise_draws: int = 1,
    published: bool = False,
    family: bool = False,
) -> dict:
    """Mean figures over the pairs, plus ``margin``: the smallest distance to the bar in dB-like units (>= 0 passes).

    ``noise_draws`` > 1 makes the noise figure the mean over that many independent draws (seeds 0, 1, ...; seed 0 is
    the single draw) and adds its standard error over draws, ``psnr_secret_noise5_se``: one draw of sigma-5 noise
    moves the figure by about +-0.1 dB, as much as the margins models are compared on.

    ``published`` adds the published-image figures (``published_figures``); the bar's figures and ``margin`` stay
    as they are."""
    spans = range(0, len(covers), batch)
    stegos = torch.cat([model.embed(covers[i : i + batch], secrets[i : i + batch]) for i in spans])
    stego8 = to_255(stegos)
    flat = psnr_flat(stego8, to_255(covers))
    res = {
        "psnr_cover": psnr(stego8, to_255(covers)).mean().item(),
        "ssim_cover": ssim(stego8, to_255(covers)).mean().item(),
        # Over the covers' flat blocks: the mean and the worst image's (of the covers that have such blocks).
        "psnr_cover_flat": mean_db(flat),
        "psnr_cover_flat_worst": flat.clamp(max=EXACT_DB).nan_to_num(nan=EXACT_DB).min().item(),
    }
    x8 = stego8 / 255
    k = secrets.shape[1] // covers.shape[1]  # secrets per cover
    res["psnr_secret"] = _secret_psnr(model, x8, secrets, batch, res, "" if k > 1 else None)
    for name, attack in QUICK_ATTACKS.items():
        if name == "noise5" and noise_draws > 1:
            per = [{} for _ in range(noise_draws)]
            each = "_noise5" if k > 1 else None
            draws = torch.tensor(
                [_secret_psnr(model, noise_draw(x8, s), secrets, batch, per[s], each) for s in range(noise_draws)]
            )
            res.update({key: sum(d[key] for d in per) / noise_draws for key in per[0]})
            res["psnr_secret_noise5"] = draws.mean().item()
            res["psnr_secret_noise5_se"] = (draws.std() / noise_draws**0.5).item()
        else:
            each = f"_{name}" if k > 1 else None
            res[f"psnr_secret_{name}"] = _secret_psnr(model, attack(x8), secrets, batch, res, each)
    res["psnr_secret_worst"] = min(res[f"psnr_secret_{name}"] for name in QUICK_ATTACKS)
    res["margin"] = min(bar_criteria(res).values())
    if published:
        res.update(published_figures(model, x8, secrets, batch))
    if family:
        res.update(condition_figures(model, x8, secrets, P.FAMILY, batch))
    return res


@torch.inference_mode()
def published_figures(model: torch.nn.Module, x8: torch.Tensor, secrets: torch.Tensor, batch: int = 8) -> dict:
    """The published-image figures of 8-bit stegos ``x8`` (B, C, H, W) in [0, 1]: ``psnr_secret_NAME`` for every
    condition of ``published.PUBLISHED`` (a shift's on the overlap, in the better alignment, named in
    ``shift_alignment``), ``psnr_secret_published_worst``, ``published_margin`` (the smallest distance to
    ``PUBLISHED_BAR``, >= 0: met) and ``published_misses``, the figures under their bar."""
    res = condition_figures(model, x8, secrets, P.PUBLISHED, batch)
    res["psnr_secret_published_worst"] = min(res[f"psnr_secret_{name}"] for name in P.PUBLISHED)
    criteria = published_criteria(res)
    res["published_margin"] = min(criteria.values())
    res["published_misses"] = [f"psnr_secret_{name}" for name, d in criteria.items() if d < 0]
    return res


@torch.inference_mode()
def condition_figures(
    model: torch.nn.Module, x8: torch.Tensor, secrets: torch.Tensor, conditions: dict, batch: int = 8
) -> dict:
    """``psnr_secret_NAME`` for each condition of ``conditions`` applied to the 8-bit stegos ``x8`` (a shift's on
    the overlap, in the better alignment, named in ``shift_alignment``)."""
    res: dict = {}
    alignment = {}
    secrets255 = to_255(secrets)
    for name, attack in conditions.items():
        rec = _reveal(model, attack(x8), batch)
        if name in P.SHIFT_OF:
            values, alignment[name] = P.overlap_psnr(rec, secrets255, P.SHIFT_OF[name])
        else:
            values = psnr(rec, secrets255)
        res[f"psnr_secret_{name}"] = mean_db(values)
    res["shift_alignment"] = alignment
    return res


def published_criteria(res: dict) -> dict[str, float]:
    """Distance (dB) of each published-image figure to its bar in ``published.PUBLISHED_BAR`` (>= 0: met)."""
    return {name: res[f"psnr_secret_{name}"] - bar for name, bar in P.PUBLISHED_BAR.items()}


def bar_misses(res: dict) -> list[str]:
    """The quality bar's figures under their bar (keys of ``res``; the attacked criterion spelt out per attack)."""
    misses = [k for k, d in bar_criteria(res).items() if d < 0 and k != "psnr_secret_worst"]
    misses += [
        f"psnr_secret_{name}" for name in QUICK_ATTACKS if res[f"psnr_secret_{name}"] < BAR["psnr_secret_attacked"]
    ]
    return misses


def _reveal(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Secrets revealed from stegos ``x`` (B, C, H, W) in [0, 1], 8-bit rounded first as a saved PNG, on 0-255."""
    x = to_255(x) / 255
    return to_255(torch.cat([model.reveal(x[i : i + batch]) for i in range(0, len(x), batch)]))


def _secret_psnr(
    model: torch.nn.Module,
    x: torch.Tensor,
    secrets: torch.Tensor,
    batch: int,
    res: dict | None = None,
    each: str | None = None,
) -> float:
    """Mean secret PSNR revealed from stegos ``x`` (B, C, H, W) in [0, 1], 8-bit rounded first as a saved PNG (over
    all K secrets' channels at once). With ``each`` (K > 1), every secret's own mean PSNR also goes into ``res`` as
    ``psnr_secret{j}{each}`` (j = 1..K; ``each`` = "" for the clean figure, "_noise5" after that attack...)."""
    revealed, want = _reveal(model, x, batch), to_255(secrets)
    if res is not None and each is not None:
        c = x.shape[1]
        for j in range(want.shape[1] // c):
            part = slice(j * c, (j + 1) * c)
            res[f"psnr_secret{j + 1}{each}"] = mean_db(psnr(revealed[:, part], want[:, part]))
    return mean_db(psnr(revealed, want))


def bar_criteria(res: dict) -> dict[str, float]:
    """Distance to each of the bar's four criteria (>= 0: met), SSIM in hundredths so the units are alike."""
    return {
        "psnr_cover": res["psnr_cover"] - BAR["psnr_cover"],
        "ssim_cover": (res["ssim_cover"] - BAR["ssim_cover"]) * 100,
        "psnr_secret": res["psnr_secret"] - BAR["psnr_secret"],
        "psnr_secret_worst": res["psnr_secret_worst"] - BAR["psnr_secret_attacked"],
    }


def bar_score(res: dict) -> float:
    """Rank of a validation result for keeping the best checkpoint: first how many criteria of the bar it meets,
    then its margin. A bare margin (the smallest distance) let a checkpoint that had fallen below the SSIM bar win
    over one that met it, as long as its worst secret figure was further from its own bar."""
    met = sum(v >= 0 for v in bar_criteria(res).values())
    return 1000.0 * met + res["margin"]


def verdict_failed(res: dict, bar: str = "quality") -> bool:
    """``validate``'s verdict on its figures (exit code 4 when True): the quality bar missed, or with ``bar ==
    "published"`` the published-image bar missed as well."""
    if bar not in ("quality", "published"):
        raise ValueError(f"unknown bar {bar!r}: expected quality or published")
    return res["margin"] < 0 or (bar == "published" and res["published_margin"] < 0)


def verdict_lines(res: dict, bar: str = "quality") -> list[str]:
    """The lines ``validate`` ends with: each bar's missed figures, and a note when the published-image bar is
    missed but does not set the exit code."""
    lines = []
    for label, misses in (("quality bar", bar_misses(res)), ("published-image bar", res["published_misses"])):
        if misses:
            lines.append(f"misses the {label}: {', '.join(m.removeprefix('psnr_secret_') for m in misses)}")
    if bar == "quality" and res["published_margin"] < 0:
        lines.append("(the published-image bar sets the exit code only with --bar published)")
    return lines
