"""Steganalysis: how well can a detector tell stego images from covers? (paper Table 3).

Three detectors, each trained on the training half and scored on the test half of pair-aware 50/50 splits (a photo's
cover and its stego, and every tile cut from them, always fall on the same side):

* ``srm-fld``: a reduced SRM-style rich model (``srm_features``, 1339 features, described there) classified by
  Kodovsky's ensemble of Fisher linear discriminants on random feature subspaces with majority voting.
* ``xunet``: XuNet (Xu, Wu & Shi 2016): fixed KV high-pass filter, ABS, BN, TanH, average pooling, 1x1 convs.
* ``wavelet-fld``: Lyu & Farid's wavelet higher-order statistics (a reduced, Haar-based version, ``wavelet_features``)
  with one regularised Fisher linear discriminant. This is our third detector; the paper's third one, "CSR", is not
  defined in any source we can read, so we do not claim to reproduce it.

The figure is P_E = min over thresholds of (P_FA + P_MD) / 2 on the test half (0.5: the detector does no better than a
coin; 0: perfect detection), averaged over the splits. All images are uint8.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

# ---------------------------------------------------------------------------------------------------------------------
# Error measure and splits
# ---------------------------------------------------------------------------------------------------------------------


def min_pe(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, float]:
    """P_E = min over thresholds t of (P_FA + P_MD) / 2, deciding "stego" when ``score >= t``.

    Args:
        scores: (n,) higher means "more likely stego".
        labels: (n,) 0 cover, 1 stego (both classes present).
    Returns:
        (P_E, P_FA, P_MD, threshold) at the minimum; the threshold +inf (everything called cover) gives 0.5, so
        P_E <= 0.5 always.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("P_E needs both covers and stegos in the test set")
    thresholds = np.concatenate([np.unique(scores), [np.inf]])
    called = scores[None, :] >= thresholds[:, None]  # (T, n): every candidate threshold at once
    p_fa = called[:, ~labels].mean(1)
    p_md = (~called[:, labels]).mean(1)
    pe = (p_fa + p_md) / 2
    i = int(np.argmin(pe))
    return float(pe[i]), float(p_fa[i]), float(p_md[i]), float(thresholds[i])


def pair_splits(n_groups: int, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random 50/50 splits of group ids (a group = one photo with its stego): (train ids, test ids)."""
    if n_groups < 4:
        raise ValueError(f"steganalysis needs at least 4 photos (2 per half), got {n_groups}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        perm = rng.permutation(n_groups)
        half = n_groups // 2
        out.append((np.sort(perm[:half]), np.sort(perm[half:])))
    return out


def tiles(images: np.ndarray, tile: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Cut (N, C, H, W) uint8 images into non-overlapping ``tile`` px squares: (M, C, tile, tile) and the (M,) source
    image index. ``None`` (or a tile larger than the images) keeps whole images. More, smaller samples let detectors
    train on small photo sets; the split stays by photo."""
    n, _, h, w = images.shape
    if not tile or tile >= min(h, w):
        return images, np.arange(n)
    ty, tx = h // tile, w // tile
    t = images[:, :, : ty * tile, : tx * tile].reshape(n, -1, ty, tile, tx, tile)
    t = t.transpose(0, 2, 4, 1, 3, 5).reshape(n * ty * tx, -1, tile, tile)
    return np.ascontiguousarray(t), np.repeat(np.arange(n), ty * tx)


# ---------------------------------------------------------------------------------------------------------------------
# SRM-style rich model (reduced)
# ---------------------------------------------------------------------------------------------------------------------

SRM_T = 2  # truncation: quantised residuals are clipped to {-T .. T}
_KB = [[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]]
_KV = [
    [-1.0, 2.0, -2.0, 2.0, -1.0],
    [2.0, -6.0, 8.0, -6.0, 2.0],
    [-2.0, 8.0, -12.0, 8.0, -2.0],
    [2.0, -6.0, 8.0, -6.0, 2.0],
    [-1.0, 2.0, -2.0, 2.0, -1.0],
]
# name -> (kernel for the horizontal residual, quantisation step q, directional?). Directional residuals use the
# transposed kernel for the vertical co-occurrence; non-directional ones (SQUARE) use the same residual both ways.
SRM_RESIDUALS: dict[str, tuple[list[list[float]], float, bool]] = {
    "1st": ([[-1.0, 1.0]], 1.0, True),  # x[i, j+1] - x[i, j]
    "2nd": ([[1.0, -2.0, 1.0]], 2.0, True),  # x[i, j-1] - 2 x[i, j] + x[i, j+1]
    "3rd": ([[-1.0, 3.0, -3.0, 1.0]], 3.0, True),
    "square3x3": (_KB, 4.0, False),
    "square5x5": (_KV, 12.0, False),
    "edge3x3": ([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0]], 4.0, True),  # top half of SQUARE 3x3
}


def _orbit_classes(sign_symmetric: bool) -> tuple[np.ndarray, int]:
    """Map each of the (2T+1)^4 co-occurrence bins to its class under reversal (and sign flip) symmetry."""
    vals = range(-SRM_T, SRM_T + 1)
    base = 2 * SRM_T + 1
    canon: dict[tuple[int, ...], int] = {}
    mapping = np.zeros(base**4, np.int64)
    for d in itertools.product(vals, repeat=4):
        orbit = [d, d[::-1]]
        if sign_symmetric:
            orbit += [tuple(-v for v in o) for o in orbit]
        key = min(orbit)
        code = sum((v + SRM_T) * base ** (3 - k) for k, v in enumerate(d))
        mapping[code] = canon.setdefault(key, len(canon))
    return mapping, len(canon)


_SPAM_CLASSES, _N_SPAM = _orbit_classes(sign_symmetric=True)  # 169 bins for T = 2
_MINMAX_CLASSES, _N_MINMAX = _orbit_classes(sign_symmetric=False)  # 325 bins for T = 2


def _quantise(r: torch.Tensor, q: float) -> torch.Tensor:
    return (torch.clamp(torch.round(r / q), -SRM_T, SRM_T) + SRM_T).to(torch.int32)


def _cooc4(qr: torch.Tensor, vertical: bool) -> torch.Tensor:
    """4th-order co-occurrence codes of horizontally (or vertically) adjacent quantised residuals: (B, H * W') int."""
    base = 2 * SRM_T + 1
    if vertical:
        qr = qr.transpose(-1, -2)
    w = qr.shape[-1] - 3
    return sum(qr[..., k : k + w] * base ** (3 - k) for k in range(4)).flatten(1)


def _hist(codes: Sequence[torch.Tensor], n_images: int, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-image normalised histograms of co-occurrence codes mapped to symmetry classes: (n_images, n_classes)."""
    cls = torch.from_numpy(classes)
    out = torch.zeros(n_images, n_classes, dtype=torch.float64)
    for c in codes:  # each (n_images, L) long
        idx = cls[c.long()] + torch.arange(n_images)[:, None] * n_classes
        out += torch.bincount(idx.flatten(), minlength=n_images * n_classes).view(n_images, n_classes).double()
    return (out / out.sum(1, keepdim=True).clamp_min(1)).numpy()


def _residual(x: torch.Tensor, kernel: list[list[float]]) -> torch.Tensor:
    k = torch.tensor(kernel, dtype=x.dtype)
    return F.conv2d(x, k[None, None])


def srm_feature_names() -> list[str]:
    names = [f"{r}_spam_hv_{i}" for r in SRM_RESIDUALS for i in range(_N_SPAM)]
    return names + [f"1st_minmax_rd_{i}" for i in range(_N_MINMAX)]


def srm_features(images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Reduced SRM-style rich model: (N, C, H, W) uint8 -> (N, 1339) float64.

    Contents (Fridrich & Kodovsky 2012 notation), all with truncation T = 2 and 4th-order co-occurrences of four
    neighbouring quantised residual samples, each submodel's histogram normalised to sum 1:

    * six linear residuals, each quantised with q = its central coefficient c: 1st order (q 1), 2nd order (q 2),
      3rd order (q 3), SQUARE 3x3 (q 4), SQUARE 5x5 / KV (q 12), EDGE 3x3 (q 4). Horizontal co-occurrences of the
      horizontal residual plus vertical co-occurrences of the vertical (transposed) residual, merged under direction
      reversal and sign symmetry: 169 bins each ("spam hv"), 1014 features;
    * one non-linear residual: the min and the max of the 1st-order right and down residuals ("minmax"), horizontal
      plus vertical co-occurrences, min and sign-flipped max merged, then reversal symmetry: 325 features.

    Not included (the full SRM's 34,671 features have them): the q = 1.5c and 2c quantisations, the other minmax
    submodels (of 2nd/3rd order, SQUARE and EDGE in several directions), EDGE 5x5 and the 3rd-order co-occurrence
    geometries. Colour images: co-occurrence counts of the C channels are added (one histogram per submodel).
    """
    n, c = images.shape[:2]
    feats = []
    for start in range(0, n, batch):
        # float32 is exact here (integer pixels, small integer kernels) and several times faster than float64.
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch])).float()
        b = x.shape[0]
        x = x.reshape(b * c, 1, *x.shape[-2:])
        parts = []
        for kernel, q, directional in SRM_RESIDUALS.values():
            rh = _quantise(_residual(x, kernel), q)[:, 0]
            rv = _quantise(_residual(x, [list(r) for r in zip(*kernel, strict=True)]), q)[:, 0] if directional else rh
            codes = [_cooc4(rh, vertical=False).view(b, -1), _cooc4(rv, vertical=True).view(b, -1)]
            parts.append(_hist(codes, b, _SPAM_CLASSES, _N_SPAM))
        right = (x[..., :-1, 1:] - x[..., :-1, :-1])[:, 0]
        down = (x[..., 1:, :-1] - x[..., :-1, :-1])[:, 0]
        lo, hi = _quantise(torch.minimum(right, down), 1.0), _quantise(torch.maximum(right, down), 1.0)
        hi_flipped = 2 * SRM_T - hi  # max(r) = -min(-r): fold the max into the min's histogram
        codes = [_cooc4(t, vertical=v).view(b, -1) for t in (lo, hi_flipped) for v in (False, True)]
        parts.append(_hist(codes, b, _MINMAX_CLASSES, _N_MINMAX))
        feats.append(np.concatenate(parts, axis=1))
    return np.concatenate(feats)


# ---------------------------------------------------------------------------------------------------------------------
# Wavelet higher-order statistics (Lyu & Farid, reduced)
# ---------------------------------------------------------------------------------------------------------------------


def _haar(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One orthonormal Haar level: (B, 1, H, W) -> low-pass (B, 1, H/2, W/2) and (horizontal, vertical, diagonal)."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, ((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2)


def _moments(v: torch.Tensor) -> torch.Tensor:
    """Mean, variance, skewness, kurtosis over the last dim: (B, L) -> (B, 4)."""
    mu = v.mean(1, keepdim=True)
    var = ((v - mu) ** 2).mean(1, keepdim=True)
    sd = var.sqrt().clamp_min(1e-12)
    z = (v - mu) / sd
    return torch.cat([mu, var, (z**3).mean(1, keepdim=True), (z**4).mean(1, keepdim=True)], 1)


def _prediction_log_error(band: torch.Tensor, cousins: Sequence[torch.Tensor]) -> torch.Tensor:
    """Lyu & Farid's linear predictor of coefficient magnitudes, per image: (B, h, w) -> log errors (B, L).

    |v| at each interior position is predicted by least squares from |v| of its 4 spatial neighbours and |u| of the
    other two orientations at the same position; the error is log2(|v| + 1) - log2(|prediction| + 1).
    """
    m = band.abs()
    core = m[:, 1:-1, 1:-1]
    regressors = [m[:, :-2, 1:-1], m[:, 2:, 1:-1], m[:, 1:-1, :-2], m[:, 1:-1, 2:]]
    regressors += [u.abs()[:, 1:-1, 1:-1] for u in cousins]
    q = torch.stack([r.flatten(1) for r in regressors], 2)  # (B, L, 6)
    y = core.flatten(1)[..., None]
    reg = 1e-6 * torch.eye(q.shape[-1], dtype=q.dtype)
    w = torch.linalg.solve(q.transpose(1, 2) @ q + reg, q.transpose(1, 2) @ y)
    pred = (q @ w)[..., 0].abs()
    return torch.log2(y[..., 0] + 1) - torch.log2(pred + 1)


def wavelet_features(images: np.ndarray, levels: int = 3) -> np.ndarray:
    """Reduced Lyu-Farid statistics: (N, C, H, W) uint8 -> (N, C * levels * 3 * 8) float64 (216 for RGB).

    Per colour channel, per level of an orthonormal Haar decomposition (Lyu & Farid use 9-tap QMFs), per orientation
    (horizontal, vertical, diagonal): mean, variance, skewness and kurtosis of the coefficients and of the log errors
    of a linear predictor of coefficient magnitudes (spatial neighbours and the other orientations; the original also
    uses the parent scale and the other colour channels).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).double()
    n, c = x.shape[:2]
    low = x.reshape(n * c, 1, *x.shape[-2:])
    feats = []
    for _ in range(levels):
        if min(low.shape[-2:]) < 6:
            raise ValueError(f"images too small for {levels} wavelet levels")
        low, bands = _haar(low)
        for k, band in enumerate(bands):
            band2 = band[:, 0]
            cousins = [bands[j][:, 0] for j in range(3) if j != k]
            feats.append(_moments(band2.flatten(1)))
            feats.append(_moments(_prediction_log_error(band2, cousins)))
    return torch.cat(feats, 1).reshape(n, -1).numpy()


# ---------------------------------------------------------------------------------------------------------------------
# Linear classifiers: Fisher linear discriminant and Kodovsky's ensemble
# ---------------------------------------------------------------------------------------------------------------------


def _fld(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Fisher linear discriminant: weights (d,) and the threshold minimising the training P_E."""
    x0, x1 = x[y == 0], x[y == 1]
    m0, m1 = x0.mean(0), x1.mean(0)
    sw = np.cov(x0, rowvar=False, bias=True).reshape(x.shape[1], -1)
    sw = sw + np.cov(x1, rowvar=False, bias=True).reshape(x.shape[1], -1)
    # Ridge relative to the scatter's scale: features can outnumber samples within a subspace.
    sw = sw + ridge * (np.trace(sw) / len(sw) + 1e-12) * np.eye(len(sw))
    w = np.linalg.solve(sw, m1 - m0)
    proj = x @ w
    _, _, _, t = min_pe(proj, y)
    if not np.isfinite(t):
        t = float((m0 + m1) @ w / 2)
    return w, t


@dataclass
class FLD:
    """One regularised Fisher linear discriminant on standardised features; ``score`` is the projection."""

    ridge: float = 1e-2
    mean_: np.ndarray | None = field(default=None, repr=False)
    scale_: np.ndarray | None = field(default=None, repr=False)
    w_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> FLD:
        self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-9
        self.w_, _ = _fld((x - self.mean_) / self.scale_, y, self.ridge)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_) @ self.w_


@dataclass
class FLDEnsemble:
    """Kodovsky, Fridrich & Holub (2012) ensemble: ``n_learners`` FLDs, each on ``d_sub`` random features and a
    bootstrap sample of the training pairs; the decision is the majority vote and ``score`` the fraction of "stego"
    votes. ``d_sub=None`` picks it from a small grid by out-of-bag error, as the original searches d_sub (the
    original also grows L until the OOB error settles; we fix L).
    """

    n_learners: int = 51
    d_sub: int | None = None
    ridge: float = 1e-3
    seed: int = 0
    learners_: list = field(default_factory=list, repr=False)
    oob_error_: float = float("nan")

    def _train(
        self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, d_sub: int, rng: np.random.Generator
    ) -> tuple[list, float]:
        uniq = np.unique(groups)
        learners, votes, counts = [], np.zeros(len(x)), np.zeros(len(x))
        for _ in range(self.n_learners):
            feats = rng.choice(x.shape[1], d_sub, replace=False)
            boot = rng.choice(uniq, len(uniq), replace=True)  # bootstrap whole pairs, as the original does
            take = np.concatenate([np.flatnonzero(groups == g) for g in boot])
            w, t = _fld(x[np.ix_(take, feats)], y[take], self.ridge)
            learners.append((feats, w, t))
            oob = ~np.isin(groups, boot)
            votes[oob] += (x[np.ix_(oob, feats)] @ w >= t).astype(float)
            counts[oob] += 1
        seen = counts > 0
        err = float(np.mean((votes[seen] / counts[seen] > 0.5) != y[seen])) if seen.any() else 0.5
        return learners, err

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> FLDEnsemble:
        groups = np.arange(len(x)) if groups is None else groups
        self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-9
        xs = (x - self.mean_) / self.scale_
        rng = np.random.default_rng(self.seed)
        n_pairs = len(np.unique(groups))
        if self.d_sub is not None:
            grid = [min(self.d_sub, x.shape[1])]
        else:  # subspaces around the training-set size, where an FLD is still well conditioned
            grid = sorted({max(2, min(x.shape[1], round(f * len(x)))) for f in (0.25, 0.5, 1.0)})
        best = None
        for d_sub in grid:
            learners, err = self._train(xs, y, groups, d_sub, rng)
            if best is None or err < best[1]:
                best = (learners, err, d_sub)
        self.learners_, self.oob_error_, self.d_sub_ = best
        self.n_pairs_ = n_pairs
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        xs = (x - self.mean_) / self.scale_
        return np.mean([(xs[:, f] @ w >= t) for f, w, t in self.learners_], axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# XuNet
# ---------------------------------------------------------------------------------------------------------------------

KV_KERNEL = torch.tensor(_KV) / 12.0


class XuNet(nn.Module):
    """XuNet (Xu, Wu & Shi, IEEE SPL 2016): (B, C, H, W) on 0-255 -> (B, 2) logits (cover, stego).

    A fixed KV high-pass filter per colour channel, then five groups: conv 5x5 (width w) -> ABS -> BN -> TanH ->
    avg-pool 5/2; conv 5x5 (2w) -> BN -> TanH -> avg-pool; three groups of conv 1x1 (4w, 8w, 16w) -> BN -> ReLU ->
    avg-pool (the last one global); a linear layer. ``width=8`` is the paper's size (8-16-32-64-128).
    """

    def __init__(self, channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.register_buffer("kv", KV_KERNEL.expand(channels, 1, 5, 5).clone())
        self.channels = channels
        w = width

        def pool() -> nn.Module:
            return nn.AvgPool2d(5, stride=2, padding=2)

        self.conv1 = nn.Conv2d(channels, w, 5, padding=2, bias=False)
        self.g1 = nn.Sequential(nn.BatchNorm2d(w), nn.Tanh(), pool())
        self.g2 = nn.Sequential(nn.Conv2d(w, 2 * w, 5, padding=2, bias=False), nn.BatchNorm2d(2 * w), nn.Tanh(), pool())
        self.g3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(), pool())
        self.g4 = nn.Sequential(nn.Conv2d(4 * w, 8 * w, 1, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU(), pool())
        self.g5 = nn.Sequential(nn.Conv2d(8 * w, 16 * w, 1, bias=False), nn.BatchNorm2d(16 * w), nn.ReLU())
        self.fc = nn.Linear(16 * w, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.conv2d(x, self.kv, padding=2, groups=self.channels)
        h = self.g1(self.conv1(r).abs())
        h = self.g5(self.g4(self.g3(self.g2(h))))
        return self.fc(h.mean((-2, -1)))


@dataclass
class XuNetDetector:
    """Trains a ``XuNet`` on cover/stego pairs (each batch holds whole pairs, with random flips and 90-degree rotations
    applied to both images of a pair alike); ``score`` is the stego logit minus the cover logit."""

    epochs: int = 20
    batch_pairs: int = 8
    lr: float = 1e-3
    width: int = 8
    seed: int = 0
    device: str = "cpu"

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> XuNetDetector:
        covers, stegos = _pairs(x, y, groups)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG state
            torch.manual_seed(self.seed)
            self.net_ = XuNet(x.shape[1], self.width).to(self.device)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=1e-4)
        steps_per_epoch = max(1, -(-len(covers) // self.batch_pairs))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs * steps_per_epoch)
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(covers), generator=gen)
            for i in range(0, len(order), self.batch_pairs):
                idx = order[i : i + self.batch_pairs]
                xb = torch.cat([covers[idx], stegos[idx]]).float()
                k, flip = int(torch.randint(4, (1,), generator=gen)), bool(torch.randint(2, (1,), generator=gen))
                xb = torch.rot90(xb, k, (-2, -1))
                xb = xb.flip(-1) if flip else xb
                yb = torch.cat([torch.zeros(len(idx)), torch.ones(len(idx))]).long()
                loss = F.cross_entropy(self.net_(xb.to(self.device)), yb.to(self.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.net_.eval()
        return self

    @torch.inference_mode()
    def score(self, x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), 32):
            logits = self.net_(torch.from_numpy(np.ascontiguousarray(x[i : i + 32])).float().to(self.device))
            out.append((logits[:, 1] - logits[:, 0]).cpu().double().numpy())
        return np.concatenate(out)


def _pairs(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Covers and their stegos in matching order (the samples come as covers then stegos of the same tiles)."""
    c, s = x[y == 0], x[y == 1]
    if len(c) != len(s):
        raise ValueError("XuNet training needs every cover with its stego")
    return torch.from_numpy(np.ascontiguousarray(c)), torch.from_numpy(np.ascontiguousarray(s))


# ---------------------------------------------------------------------------------------------------------------------
# Running the detectors over splits
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    """A named detector: ``features`` maps uint8 samples to what ``make()``'s classifier fits (None: raw pixels)."""

    name: str
    description: str
    make: Callable[[int], object]  # seed -> object with fit(x, y, groups) and score(x)
    features: Callable[[np.ndarray], np.ndarray] | None = None


def default_detectors(xunet_epochs: int = 20, device: str = "cpu") -> list[Detector]:
    return [
        Detector(
            "srm-fld",
            "reduced SRM rich model (1339 features) + ensemble of 51 FLDs on random subspaces (majority vote)",
            lambda seed: FLDEnsemble(seed=seed),
            srm_features,
        ),
        Detector(
            "xunet",
            f"XuNet (KV high-pass, ABS, TanH, BN, avg pooling; widths 8-128), {xunet_epochs} epochs on the train half",
            lambda seed: XuNetDetector(epochs=xunet_epochs, seed=seed, device=device),
        ),
        Detector(
            "wavelet-fld",
            "Lyu-Farid wavelet higher-order statistics (Haar, 3 levels, 216 features for RGB) + one Fisher LD",
            lambda seed: FLD(),
            wavelet_features,
        ),
    ]


def run_steganalysis(
    covers: np.ndarray,
    stegos: np.ndarray,
    detectors: Sequence[Detector],
    n_splits: int = 5,
    tile: int | None = None,
    seed: int = 0,
    feature_cache: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Score every detector on ``n_splits`` pair-aware splits.

    Args:
        covers, stegos: (N, C, H, W) uint8, stegos[i] made from covers[i].
        tile: cut samples into tiles of this size (None: whole images); tiles of one photo share its side.
        feature_cache: dict reused across calls (e.g. across models) to compute cover features only once.
    Returns:
        One row per test sample, detector and split: detector, split, photo (index), tile, label (0 cover, 1 stego),
        score. ``summarise_pe`` turns them into P_E.
    """
    if covers.shape != stegos.shape or covers.dtype != np.uint8 or stegos.dtype != np.uint8:
        raise ValueError("covers and stegos must be uint8 arrays of the same shape")
    cov_t, photo = tiles(covers, tile)
    steg_t, _ = tiles(stegos, tile)
    tile_idx = np.arange(len(photo)) - np.searchsorted(photo, photo)  # position of each tile within its photo
    splits = pair_splits(len(covers), n_splits, seed)
    cache = {} if feature_cache is None else feature_cache
    rows: list[dict] = []
    bar = tqdm(total=len(detectors) * n_splits, desc="steganalysis", unit="fit", disable=not progress)
    for det in detectors:
        if det.features is None:
            fc, fs = cov_t, steg_t
        else:
            key = (det.name, tile, covers.shape, hash(covers.tobytes()))
            if key not in cache:
                cache[key] = det.features(cov_t)
            fc, fs = cache[key], det.features(steg_t)
        for s, (train_ids, test_ids) in enumerate(splits):
            tr, te = np.isin(photo, train_ids), np.isin(photo, test_ids)
            x = np.concatenate([fc[tr], fs[tr]])
            y = np.concatenate([np.zeros(tr.sum(), int), np.ones(tr.sum(), int)])
            groups = np.concatenate([photo[tr], photo[tr]])
            clf = det.make(seed + s)
            clf.fit(x, y, groups)
            sc, ss = clf.score(fc[te]), clf.score(fs[te])
            for label, scores in ((0, sc), (1, ss)):
                rows += [
                    {
                        "detector": det.name,
                        "split": s,
                        "photo": int(p),
                        "tile": int(t),
                        "label": label,
                        "score": float(v),
                    }
                    for p, t, v in zip(photo[te], tile_idx[te], scores, strict=True)
                ]
            bar.update()
    bar.close()
    return rows


def chance_pe(n_cover: int, n_stego: int, draws: int = 2000, seed: int = 0) -> float:
    """Mean P_E of a detector that scores at random, on test sets of this size: the minimum over thresholds picks up
    chance fluctuations, so small test sets put this below 0.5. The report prints it as the floor of "undetectable"."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_cover, int), np.ones(n_stego, int)]
    return float(np.mean([min_pe(rng.random(len(labels)), labels)[0] for _ in range(draws)]))


def summarise_pe(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per detector: mean and std of P_E over splits, mean P_FA / P_MD at the optimum, and the number of splits."""
    by: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        by.setdefault((r["detector"], r["split"]), []).append(r)
    per_det: dict[str, list[tuple[float, float, float]]] = {}
    for (det, _), rs in by.items():
        pe, fa, md, _ = min_pe(np.array([r["score"] for r in rs]), np.array([r["label"] for r in rs]))
        per_det.setdefault(det, []).append((pe, fa, md))
    out = {}
    for det, vals in per_det.items():
        a = np.array(vals)
        out[det] = {"pe": a[:, 0].mean(), "pe_std": a[:, 0].std(), "p_fa": a[:, 1].mean(), "p_md": a[:, 2].mean()}
        out[det]["splits"] = len(a)
    return out
