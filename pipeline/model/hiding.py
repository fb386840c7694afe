"""The hiding model: how one image flows through the parts it is assembled from (``compose.build_model`` builds
them from a ``ModelConfig``).

Parts, each named after what it does (None where the config has no such part):

    embedder, revealer    the learned network's two paths: SRIS-Net's (``sris/net.py``) or a baseline's
    discriminator         the dual-task discriminator (adversarial loss; its score head is SRIS-Net's score map)
    light_score           a light score head distilled from the discriminator's map
    thumbnail             our thumbnail code: its writer in embed, its reader in reveal (``codes/thumbnail.py``)
    residual_code         our residual code (``codes/residual.py``)
    mirror                the mirror decision: a pattern, the thumbnail code's pilot, or none (``codes/mirror.py``)
    restoration           registration and deblur before reveal (``codes/restore.py``)
    detector              the mark detector: the thumbnail code's registration score (``codes/register.py``)
    flip_head             the legacy learned mirror classifier (``legacy.py``)
    digital               our keyed digital layer (``digital/part.py``): a compressed secret in QIM codewords

Embed (cover (B, C, N, N), secrets (B, K*C, N, N), images float in [0, 1], N a multiple of ``config.multiple``):

    score = score map of the cover (SRIS-Net) or ones (baselines, the score-map ablation)
    residual = embedder(cover, secrets, score) [+ thumbnail.writer(cover, or cover + learned with code_last)]
    stego = residual_code.write(mirror.mark(cover + residual))            clamped: ``embed_analog``
    stego = digital.embed(cover, stego, secrets)    the analog change scaled, every level written: ``embed``

Reveal:

    stego -> restoration (registration, deblur) -> mirror.unmirror -> residual_code.strip -> [flip_head]
          -> revealer(x, guide = thumbnail.reader(x)) -> + residual_code's correction    clamped: ``reveal_analog``
    with the digital layer: digital.read(stego) first (it finds a moved grid too), the analog path on the stego moved
    back onto that grid, and per image the digital secret where a level decoded, else the analog one: ``read``

Training uses the raw paths (``embed_raw``, ``reveal_raw``: unclamped, with the legacy flip logit); the public
``embed`` / ``reveal_core`` run the folded inference graph (``inference.py``) where it covers the config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model import inference
from pipeline.model.codes.mirror import MirrorDecision
from pipeline.model.codes.register import Alignment, Registration
from pipeline.model.codes.residual import ResidualCode
from pipeline.model.codes.restore import Restoration
from pipeline.model.codes.thumbnail import DETAIL_BLOCK, ThumbnailCode
from pipeline.model.config import ModelConfig
from pipeline.model.digital.keys import Key
from pipeline.model.digital.part import DigitalPart, Revelation
from pipeline.model.legacy import FlipHead, texture_weight

# State-dict prefixes: the reveal path's parameters (what ``train --reveal-only`` trains) and the thumbnail code's.
REVEAL_PATH = ("revealer.", "thumbnail.reader.", "flip_head.")
THUMBNAIL = "thumbnail."


class HidingModel(nn.Module):
    """``embed(cover, secrets) -> stego`` and ``reveal(stego) -> secrets``, clamped to [0, 1], from the parts given
    (see the module docstring); built by ``pipeline.model.build_model``."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        embedder: nn.Module,
        revealer: nn.Module,
        discriminator: nn.Module,
        mirror: MirrorDecision,
        light_score: nn.Module | None = None,
        thumbnail: ThumbnailCode | None = None,
        residual_code: ResidualCode | None = None,
        restoration: Restoration | None = None,
        detector: Registration | None = None,
        flip_head: FlipHead | None = None,
        digital: DigitalPart | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.discriminator = discriminator
        self.embedder = embedder
        self.revealer = revealer
        self.light_score = light_score
        self.thumbnail = thumbnail
        self.flip_head = flip_head
        self.residual_code = residual_code
        self.mirror = mirror
        self.restoration = restoration
        self.detector = detector
        self.digital = digital

    # ---------------------------------------------------------------------------------------------- what is on
    @property
    def uses_score_map(self) -> bool:
        """The embedder scales its residual by the cover's score map (SRIS-Net, unless ablated)."""
        return self.config.network.arch == "sris" and self.config.ablation.score_map

    @property
    def uses_folded_graph(self) -> bool:
        """The folded inference graph covers this model: the thumbnail code on the stem's 4x4 fold, no legacy part."""
        cfg = self.config
        return cfg.coded and cfg.network.stem_stride == DETAIL_BLOCK and not cfg.legacy.active

    @property
    def registers(self) -> bool:
        """Reveal first registers the stego (``config.codes.register``), so it knows the stego's orientation."""
        return self.restoration is not None and self.restoration.registers

    # ---------------------------------------------------------------------------------------------- embed
    def score_map(self, cover: torch.Tensor) -> torch.Tensor:
        """Where to embed: (B, C, H, W) -> (B, 1, H, W) in [0, 1]; ones where the embedder uses no score map."""
        if not self.uses_score_map:
            return torch.ones_like(cover[:, :1])
        if self.light_score is not None:
            return self.light_score.score_map(cover)
        return self.discriminator.score_map(cover)

    def embed_residual(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """What embed adds to the cover before the mirror pattern and the residual code: the learned residual (scaled
        by the score map) plus the thumbnail code, (B, C, N, N). The code is not scaled by the score map: its reader
        expects the exact coefficient."""
        learned = self.embedder(cover, secrets, score)
        if self.thumbnail is None:
            return learned
        weight = texture_weight(cover, self.config.legacy.texture_weighting)
        under = cover + learned if self.config.codes.thumbnail.code_last else cover  # what the code cancels
        return learned + self.thumbnail.writer(under, secrets, weight)

    def finish_stego(self, raw: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """A raw stego (cover + ``embed_residual``) with the mirror pattern and the residual code, unclamped."""
        return self.write_residual_code(self.mirror.mark(raw), secrets)

    def embed_raw(self, cover: torch.Tensor, secrets: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
        """The training graph of embed: (B, C, N, N), (B, K*C, N, N) -> the stego, unclamped."""
        if score is None:
            score = self.score_map(cover)
        return self.finish_stego(cover + self.embed_residual(cover, secrets, score), secrets)

    def write_residual_code(self, stego: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """With the residual code: replace the raw stego's free checkerboard coefficients by the code of what reveal
        reads from the rest. No gradient flows through that reading: it is the target the code corrects, not
        something embed should learn to move."""
        if self.residual_code is None:
            return stego
        stripped, _ = self.residual_code.strip(stego)
        with torch.no_grad():
            if self.uses_folded_graph:
                read = inference.reveal_without_residual(self, stripped)
            else:
                read = self.reveal_network(stripped)[0]
        return self.residual_code.write(stripped, secrets, read)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C', H, W) padded at the bottom and right (edge replicated) to multiples of ``config.multiple``."""
        m = self.config.multiple
        ph, pw = -x.shape[-2] % m, -x.shape[-1] % m
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def embed_analog(self, cover: torch.Tensor, secrets: torch.Tensor) -> torch.Tensor:
        """The analog path alone (the graph the engines export): (B, C, H, W), (B, K*C, H, W) -> stego (B, C, H, W)
        in [0, 1]. Any H and W: images that are not multiples of ``config.multiple`` are padded to them (edge
        replicated) and the stego cropped back."""
        h, w = cover.shape[-2:]
        cover, secrets = self._pad(cover), self._pad(secrets)
        if self.uses_folded_graph:
            stego = inference.embed_folded(self, cover, secrets)
        else:
            stego = self.embed_raw(cover, secrets).clamp(0, 1)
        return stego[..., :h, :w] if stego.shape[-2:] != (h, w) else stego

    def embed(
        self,
        cover: torch.Tensor,
        secrets: torch.Tensor,
        key: Key | None = None,
        messages: list[bytes | None] | None = None,
    ) -> torch.Tensor:
        """(B, C, H, W), (B, K*C, H, W) -> stego (B, C, H, W) in [0, 1]: the analog path, then the digital layer
        where the model has one, written with ``key`` (``digital.keys.resolve_key``: the ``SRIS_KEY`` environment
        variable's key, else the public key) and carrying ``messages`` (one per image, bytes) in its base level."""
        if self.digital is None:
            return self.embed_analog(cover, secrets)
        # At an analog share of 0 the network's change is scaled away: it does not run.
        analog = cover if self.digital.config.analog_gain == 0 else self.embed_analog(cover, secrets)
        return self.digital.embed(cover, analog, secrets, key, messages)

    # ---------------------------------------------------------------------------------------------- reveal
    def unmirror(self, stego: torch.Tensor) -> torch.Tensor:
        """The images of a batch that were mirrored after embedding, mirrored back (``mirror``'s decision)."""
        return self.mirror.unmirror(stego)

    def reveal_network(
        self, x: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The revealer on an un-mirrored stego without the residual code: (secrets unclamped, legacy flip logit or
        None), guided by the thumbnail code's reading. ``flipped`` teacher-forces the legacy flip head."""
        logit = None
        if self.flip_head is not None:
            x, logit = self.flip_head.unflip(x, flipped)
        if self.thumbnail is None:
            return self.revealer(x), logit
        guide = self.thumbnail.reader(x, texture_weight(x, self.config.legacy.texture_weighting))
        return self.revealer(x, guide), logit

    def reveal_aligned(
        self, x: torch.Tensor, flipped: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reveal from a stego already un-mirrored: (secrets unclamped, flip logit or None), the residual code's
        correction added."""
        if self.residual_code is None:
            return self.reveal_network(x, flipped)
        stripped, y = self.residual_code.strip(x)
        secrets, logit = self.reveal_network(stripped, flipped)
        return self.residual_code.add(secrets, y), logit

    def reveal_raw(self, stego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training graph of reveal: un-mirror, then ``reveal_aligned``."""
        return self.reveal_aligned(self.unmirror(stego))

    def restore(self, stego: torch.Tensor, aligned: bool = False, alignment: Alignment | None = None) -> torch.Tensor:
        """What reveal does to a stego before its network (outside the exported graph): registration and deblur
        (``restoration``; identity without). ``aligned``: the caller knows the stego sits where it was embedded, so
        registration is skipped; ``alignment``: registration's result when the caller has it already."""
        return stego if self.restoration is None else self.restoration(stego, aligned, alignment)

    def refresh_restore(self) -> None:
        """Forget what ``restore`` measured from the weights (call after they changed)."""
        if self.restoration is not None:
            self.restoration.refresh()

    def reveal_core(self, stego: torch.Tensor, oriented: bool = False) -> torch.Tensor:
        """Reveal without ``restore``: the graph the engines export. ``oriented``: the stego is known to be in its
        embedded orientation (``restore`` registered it, or the caller embedded it), so the mirror test is skipped."""
        if self.uses_folded_graph:
            return inference.reveal_folded(self, stego if oriented else self.unmirror(stego))
        return (self.reveal_aligned(stego) if oriented else self.reveal_raw(stego))[0].clamp(0, 1)

    def reveal_analog(self, stego: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """The analog path's reveal: (B, C, H, W) -> secrets (B, K*C, H, W) in [0, 1]; ``aligned`` as in
        ``restore``. A model that registers knows the orientation once ``restore`` ran, so its graph does not test
        the mirror again. Any H and W, as in ``embed_analog``."""
        h, w = stego.shape[-2:]
        secrets = self.reveal_core(self.restore(self._pad(stego), aligned), oriented=self.registers or aligned)
        return secrets[..., :h, :w] if secrets.shape[-2:] != (h, w) else secrets

    def reveal(self, stego: torch.Tensor, aligned: bool = False, key: Key | None = None) -> torch.Tensor:
        """(B, C, H, W) -> secrets (B, K*C, H, W) in [0, 1]: ``read``'s secrets with the digital layer, else the
        analog path's (``reveal_analog``)."""
        if self.digital is None:
            return self.reveal_analog(stego, aligned)
        return torch.stack([r.secrets for r in self.read(stego, aligned, key)])

    def read(self, stego: torch.Tensor, aligned: bool = False, key: Key | None = None) -> list[Revelation]:
        """Per image of (B, C, H, W): the secrets and where they came from, the mark, the message
        (``digital.part.Revelation``). The digital layer reads first and finds a moved grid (unless ``aligned``);
        the analog path reveals each image moved back onto it, or with its own restore where it did not move."""
        if self.digital is None:
            raise ValueError("this model has no digital layer: reveal or reveal_and_detect read its analog path")
        readings = self.digital.read(stego, key, search=not aligned)
        out = []
        for i, reading in enumerate(readings):
            moved = reading.aligned is not None
            x = reading.aligned.to(stego.device, stego.dtype) if moved else stego[i : i + 1]
            if reading.secrets is None:  # the analog path is read only where no level decoded (choose ignores it)
                analog = self.reveal_analog(x, aligned=aligned or moved)[0]
            else:
                analog = x.new_zeros(self.config.num_secrets * self.config.channels, *x.shape[-2:])
            revelation = self.digital.choose(reading, analog)
            if revelation.secrets.shape[-2:] != stego.shape[-2:]:  # a moved grid is read at the grid's size
                revelation.secrets = F.interpolate(
                    revelation.secrets[None], size=stego.shape[-2:], mode="bilinear", align_corners=False
                )[0].clamp(0, 1)
            out.append(revelation)
        return out

    # ---------------------------------------------------------------------------------------------- detection
    def detect(self, images: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B,) how strongly each image carries this model's thumbnail code: the base
        pilot's statistic at the best grid offset and orientation (``codes/register.py``), about the maximum of a
        thousand standard normals on an unmarked image. The threshold is calibrated on unmarked photos and kept in
        the checkpoint (``detect_threshold``). With ``threshold``, images whose unshifted statistic reaches it skip
        the search (same verdicts, a fraction of the time)."""
        if self.detector is None:
            raise ValueError("detection reads the thumbnail code's pilot: this model has no thumbnail code")
        return self.detector.score(images, threshold)

    @property
    def detect_threshold(self) -> float | None:
        """The score from which ``detect`` calls an image marked, as calibrated for these weights and written in
        the checkpoint's metadata (``meta["detection"]["threshold"]``); None when it was never calibrated."""
        value = (getattr(self, "checkpoint_meta", None) or {}).get("detection", {}).get("threshold")
        return None if value is None else float(value)

    def restore_and_detect(self, stego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N, N) -> (the restored stego, mark scores (B,)) with one registration search (a model that
        registers): ``restore``, and the search's maximum, which is ``detect``'s score. The compiled engines run
        this before their reveal graph."""
        if not self.registers:
            raise ValueError("restore_and_detect needs a model that registers (config.codes.register)")
        found = self.restoration.search(stego)
        return self.restore(stego, alignment=found), found.score

    def reveal_and_detect(
        self, stego: torch.Tensor, threshold: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N, N) -> (secrets (B, K*C, N, N) in [0, 1], mark scores (B,)): ``reveal`` and ``detect``; a model
        that registers does both with one search (the scores are the search's, so ``threshold`` changes no verdict
        and saves nothing there)."""
        if self.digital is not None:  # the digital layer's search gives the score
            found = self.read(stego)
            return torch.stack([r.secrets for r in found]), torch.tensor([r.score for r in found])
        if not (self.registers and self.detector is not None):
            return self.reveal(stego), self.detect(stego, threshold)
        h, w = stego.shape[-2:]
        restored, scores = self.restore_and_detect(self._pad(stego))
        secrets = self.reveal_core(restored, oriented=True)
        return (secrets[..., :h, :w] if secrets.shape[-2:] != (h, w) else secrets), scores
