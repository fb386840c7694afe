"""``TrainConfig``: everything a training run needs, as data. The fields the ``train`` command exposes carry their
option in their metadata (``pipeline/cli_fields.py``), so the command's options are generated from this class."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.cli_fields import option
from pipeline.model.config import PRESETS, ModelConfig, get_config
from pipeline.model.migrate import migrate_overrides


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint and in ``OUT/train_config.json``."""

    data: str = field(
        metadata=option(
            "--data", "Folder of photos (JPEG/PNG, any size) or WebDataset shards (dir or s3://).", required=True
        )
    )
    out: str = field(
        metadata=option(
            "--out", "Run folder: checkpoints, logs, curves. An existing run there is resumed.", required=True
        )
    )
    preset: str = field(default="small", metadata=option("--config", "Model preset.", choices=tuple(sorted(PRESETS))))
    # Model config fields by short name (``ModelConfig.with_overrides``): the ``train`` command's model options.
    model_overrides: dict[str, Any] = field(default_factory=dict)
    crop: int = field(
        default=128,
        metadata=option("--crop", "Training crop size [default: 128, 256 for the paper preset].", default=None),
    )
    batch: int = field(default=16, metadata=option("--batch"))
    steps: int = field(default=6000, metadata=option("--steps", "Length of the schedule (cosine decay ends here)."))
    lr: float = field(default=1e-3, metadata=option("--lr"))
    lr_d: float = 2e-4
    warmup: int = 200
    min_lr_ratio: float = 0.05
    cover_psnr_target: float = field(
        default=38.5, metadata=option("--cover-psnr-target", "Training constraint on cover PSNR (dB).")
    )
    ssim_target: float = field(default=0.975, metadata=option("--ssim-target", "Training constraint on cover SSIM."))
    # The constraint targets start loose and tighten linearly until ``target_ramp`` x steps: a revealer first learns
    # to read a strong residual, then the residual is squeezed (a run that started at the final targets sat at
    # 15 dB secret while the cover was already at 40 dB).
    cover_psnr_start: float = 30.0
    ssim_start: float = 0.85
    target_ramp: float = 0.6
    w_low: float = 1.0
    w_adv: float = 0.02
    # The discriminator's real/fake task (ablation: off = its trunk and score head learn the texture target alone,
    # and the embedder gets no adversarial loss; the score map is then not trained against real/fake).
    realfake: bool = field(
        default=True,
        metadata=option(
            "--no-realfake",
            "Ablation: the discriminator learns its score map alone (the texture target), without the real/fake "
            "task and without an adversarial loss for the embedder.",
            flag_value=False,
        ),
    )
    w_guide: float = field(default=0.03, metadata=option("--w-guide", "Weight of the score-map guidance loss."))
    w_flip: float = 1.0
    w_score: float = 1.0
    d_warmup: int = 300
    quantize_from: int = 600
    fidelity_from: int = 0
    fidelity_ramp: int = 1000
    flip_prob: float = 0.25
    attack_mix: str = field(
        default="bar",
        metadata=option(
            "--attack-mix",
            "Training distortions: 'bar' = the conditions the quality bar measures; 'job' = those plus the batch "
            "job's resampling of large images; 'wide' = stronger noise/blur/JPEG; 'blur' = 'job' weighted towards "
            "the mean and Gaussian filters (for models with --residual-gain, whose code carries the clean figure); "
            "'noise' = 'blur' with more and stronger Gaussian noise (sigma 3-7); 'noise-heavy' = 'noise' with the "
            "filters' shares moved to noise; 'noise-most' = noise in 70% of the batches; 'published' = JPEG at "
            "quality 50-95 and resizing down by 0.4-0.9 in half the batches, the laboratory conditions in the rest.",
            choices=("bar", "job", "wide", "blur", "noise", "noise-heavy", "noise-most", "published"),
        ),
    )
    # Learning-rate multiplier of the thumbnail code's linear maps (SRIS-Net): at the full rate the untrained deep
    # paths' gradients rewrote half of the analytic code in 250 steps and the secret fell from 25 to 16 dB.
    thumbnail_lr: float = field(
        default=0.02,
        metadata=option(
            "--thumbnail-lr",
            "Learning-rate multiplier of the thumbnail code's linear maps; 0 keeps the analytic code fixed. "
            "Trained, the code drifts towards a cheaper cover and a noisier reading.",
            range=(0.0, 1.0),
        ),
    )
    # Initial constraint weights: tiny for a from-scratch code (the revealer must first learn to read a strong
    # residual); a model that already works starts where a trained one ended, so the cover holds from step 1.
    lambda_cover_init: float = 0.05
    lambda_ssim_init: float = 0.05
    # Constraint weights to start from whatever else says (a fine-tune otherwise keeps its training state's): how a
    # fine-tune trades cover quality for the secret. Dual ascent moves a weight by ~e^0.2 per 1000 steps, so a
    # relaxed target alone barely loosened a weight that a tighter one had raised to 160 (``--lambda-ssim``).
    lambda_cover_start: float | None = field(
        default=None,
        metadata=option(
            "--lambda-cover",
            "Start the cover-PSNR constraint's weight here (as --lambda-ssim).",
            range=(0.01, 30.0),
        ),
    )
    lambda_ssim_start: float | None = field(
        default=None,
        metadata=option(
            "--lambda-ssim",
            "Start the SSIM constraint's weight here (a fine-tune otherwise keeps its training state's): lower "
            "trades cover SSIM for the secret.",
            range=(0.01, 1000.0),
        ),
    )
    # Start from a trained model's weights (a model checkpoint or a run's last.pt); layers whose names and shapes
    # match are copied, the rest keep their fresh initialisation. Ignored when the run resumes.
    init_from: str | None = field(
        default=None,
        metadata=option("--init-from", "Start from this checkpoint's weights (fine-tuning).", exists=True),
    )
    # Train the reveal path alone on a trained model's stegos (embedder, score heads and discriminator frozen): the
    # cover side cannot move, so whatever the revealer gains is free; no discriminator step, no constraint updates.
    reveal_only: bool = field(
        default=False,
        metadata=option(
            "--reveal-only",
            "Train the reveal path alone (with --init-from: a trained model's embedder, score heads and "
            "discriminator stay frozen, so the cover figures cannot change).",
        ),
    )
    # Fraction of the secrets drawn as random synthetic graphics (``graphics.py``: shapes, checkerboards, colour
    # waves) instead of photo crops: watermarks are often logos, and a revealer trained on photos alone reads them
    # worse. Validation keeps photo secrets (the quality bar's).
    synthetic_secrets: float = field(
        default=0.0,
        metadata=option(
            "--synthetic-secrets",
            "Fraction of the training secrets drawn as random synthetic graphics (shapes, checkerboards, colour "
            "waves) instead of photo crops: for watermarks that are logos or patterns. Validation keeps photo "
            "secrets.",
            range=(0.0, 1.0),
        ),
    )
    clip: float = 1.0
    val_fraction: float = 0.2
    val_size: int = 256
    val_every: int = field(default=250, metadata=option("--val-every", "Validate every N steps."))
    # Draws of sigma-5 noise the validation's noise figure averages (``quick_validation``): one draw moves it by about
    # 0.1 dB, enough to pick the wrong best.pt when runs sit at the bar.
    val_noise_draws: int = field(
        default=1,
        metadata=option(
            "--val-noise-draws",
            "Average the validation's noise figure over this many draws (as `validate --noise-draws`): a steadier "
            "figure for choosing best.pt, at one more reveal of the held-out photos per draw.",
            range=(1, 1000),
        ),
    )
    log_every: int = 25
    ckpt_minutes: float = 3.0
    max_minutes: float | None = field(
        default=None, metadata=option("--max-minutes", "Stop (resumably) after this much wall time.")
    )
    # A wall-time schedule: the cosine decay and the target ramp run over this many minutes of training instead of
    # ``steps``, and the run ends there (a GPU lent for a fixed time; steps/s is unknown until it runs).
    minutes: float | None = field(
        default=None,
        metadata=option(
            "--minutes",
            "A wall-time schedule: the learning-rate decay and the target ramp run over this many minutes of "
            "training instead of --steps (ignored then), and the run ends there. For a machine lent for a fixed "
            "time.",
        ),
    )
    device: str = field(default="cpu", metadata=option("--device", "cpu, cuda, cuda:1 ..."))
    threads: int | None = field(
        default=None, metadata=option("--threads", "CPU threads for torch (default: all cores).")
    )
    seed: int = field(default=0, metadata=option("--seed"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def works_from_step_zero(self) -> bool:
        """Fine-tuning, or SRIS-Net with its thumbnail code: the model hides and reveals before training."""
        cfg = model_config(self)
        return self.init_from is not None or cfg.coded

    def without_warmups(self) -> TrainConfig:
        """The schedule of a model that works from step 0: none of the from-scratch warm-ups (unrounded stego,
        phased-in fidelity, loose targets, discriminator warm-up), which exist so that a code can be found at all; the
        targets hold from the first step, with constraint weights where the first run (small-v1) ended."""
        return replace(
            self,
            quantize_from=0,
            d_warmup=0,
            fidelity_ramp=0,
            cover_psnr_start=self.cover_psnr_target,
            ssim_start=self.ssim_target,
            warmup=50 if self.init_from else self.warmup,
            lambda_cover_init=0.3,
            lambda_ssim_init=5.0,
        )

    def warmups_scaled(self, reference_steps: int = 6000) -> TrainConfig:
        """The from-scratch warm-ups (discriminator, 8-bit rounding, fidelity ramp, learning-rate warm-up) shrunk in
        proportion for a run shorter than ``reference_steps`` (the CLI's default schedule they were tuned on): a
        400-step run would otherwise never round its stegos to 8 bits. Longer runs keep them as they are."""
        f = min(1.0, self.steps / reference_steps)
        return replace(
            self,
            d_warmup=round(self.d_warmup * f),
            quantize_from=round(self.quantize_from * f),
            fidelity_ramp=round(self.fidelity_ramp * f),
            warmup=round(self.warmup * f),
        )


def model_config(tc: TrainConfig) -> ModelConfig:
    return get_config(tc.preset, **migrate_overrides(tc.model_overrides))
