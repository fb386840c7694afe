"""The training loop: ``train(TrainConfig)``, resumable, with Parquet logs, checkpoints and learning curves.

One step:
  1. covers and K secrets per cover: random crops of the training photos;
  2. the dual-task discriminator scores the cover (real/fake logit and score map);
  3. embed with the (detached) score map, 8-bit rounding (straight-through), an independent random mirror per
     image, one random distortion per batch, 8-bit rounding again, reveal;
  4. generator loss: secret dB + lambda_c * cover MSE / target MSE + lambda_ssim * (1 - SSIM) + low-band MSE +
     adversarial + score-map guidance (+ the BCE of a legacy flip head); lambda_c and lambda_ssim are dual-ascent
     constraint weights;
  5. discriminator loss: real/fake BCE on cover vs stego + L1 of the score map against the texture target.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.core import distortions as D
from pipeline.core.files import atomic_path
from pipeline.core.photos import validation_pairs
from pipeline.io.photos import load_photos
from pipeline.model import build_model
from pipeline.model.checkpoint import save_checkpoint
from pipeline.model.config import CONFIG_VERSION
from pipeline.model.hiding import REVEAL_PATH, THUMBNAIL
from pipeline.model.migrate import config_from_dict, config_version, migrate
from pipeline.model.sris.discriminator import texture_target
from pipeline.model.sris.lpfdd import LaplacianPyramid
from pipeline.train import attacks as A
from pipeline.train.config import TrainConfig, model_config
from pipeline.train.data import CropSampler
from pipeline.train.graphics import GraphicsSampler
from pipeline.train.losses import Constraint, bce, db_loss, guidance_loss, normalized_mse, psnr01, ssim_loss

STATE_FORMAT = "sris-pipeline/train-state-1"

__all__ = ["TrainConfig", "Trainer", "model_config", "train"]


def lr_factor(step: int, tc: TrainConfig, progress: float | None = None) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` at ``steps`` (or at ``progress`` 1 of a wall-time
    schedule, ``progress`` being the fraction of ``minutes`` trained)."""
    if step < tc.warmup:
        return (step + 1) / tc.warmup
    done = progress if progress is not None else (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    t = min(1.0, done)
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class Trainer:
    def __init__(self, tc: TrainConfig) -> None:
        self.tc = tc
        self.out = Path(tc.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.device = torch.device(tc.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop shapes: cuDNN picks its fastest kernels once
        self.cfg = model_config(tc)
        self.model = build_model(self.cfg).to(self.device)
        if tc.reveal_only:
            for n, p in self.model.named_parameters():
                p.requires_grad_(n.startswith(REVEAL_PATH))
        # The discriminator and the light score head distilled from it learn in the discriminator's step.
        d_params = [p for n, p in self.model.named_parameters() if n.startswith(("discriminator.", "light_score."))]
        named = [
            (n, p)
            for n, p in self.model.named_parameters()
            if p.requires_grad and not n.startswith(("discriminator.", "light_score."))
        ]
        groups = [
            {"params": [p for n, p in named if not n.startswith(THUMBNAIL)], "lr_scale": 1.0},
            {"params": [p for n, p in named if n.startswith(THUMBNAIL)], "lr_scale": tc.thumbnail_lr},
        ]
        self.opt_g = torch.optim.Adam([g for g in groups if g["params"]], lr=tc.lr)
        self.opt_d = torch.optim.Adam(d_params, lr=tc.lr_d, betas=(0.5, 0.999))
        # Both constraint weights start low: the secret path must learn to use the residual before imperceptibility
        # pulls it back (starting at 1 and 10, a run shrank the residual to nothing before the revealer learned).
        # Slow rates (10 dB or 0.5 SSIM below target: x e in 50 steps) keep the weights from swinging with the
        # batch-to-batch noise of the measured values.
        self.cover_c = Constraint(
            tc.cover_psnr_target, rate=0.002, scale=1.0, lo=0.01, hi=30.0, log_weight=math.log(tc.lambda_cover_init)
        )
        self.ssim_c = Constraint(
            tc.ssim_target, rate=0.002, scale=20.0, lo=0.01, hi=1000.0, log_weight=math.log(tc.lambda_ssim_init)
        )
        self.pyr = LaplacianPyramid(3).to(self.device)
        self.step = 0
        self.elapsed = 0.0
        self.best_score = -math.inf
        self.rng = random.Random(tc.seed)
        self.log_rows: list[dict[str, Any]] = []
        self.val_rows: list[dict[str, Any]] = []

        train_imgs, val_imgs, train_names, val_names = load_photos(tc.data, self.cfg.channels, tc.val_fraction)
        self.sampler = CropSampler(train_imgs, tc.crop, seed=tc.seed, device=self.device)
        self.graphics = GraphicsSampler(tc.crop, self.cfg.channels, tc.seed + 1, self.device)
        self.val = validation_pairs(val_imgs, tc.val_size, self.cfg.num_secrets) if val_imgs else None
        self._resume()  # first: a refused resume must not overwrite the run's files
        if self.step == 0:
            if tc.init_from:
                self._init_from(tc.init_from)
            for c, start in ((self.cover_c, tc.lambda_cover_start), (self.ssim_c, tc.lambda_ssim_start)):
                if start is not None:
                    c.log_weight = math.log(start)
        (self.out / "split.json").write_text(json.dumps({"train": train_names, "validation": val_names}, indent=1))
        (self.out / "train_config.json").write_text(json.dumps(asdict(tc), indent=1))

    # ----------------------------------------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "train_config": asdict(self.tc),
            "model_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "best_score": self.best_score,
            "cover_log_w": self.cover_c.log_weight,
            "ssim_log_w": self.ssim_c.log_weight,
            "rng": self.rng.getstate(),
            "sampler_rng": self.sampler.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_state(self) -> None:
        with atomic_path(self.out / "last.pt") as tmp:
            torch.save(self._state(), tmp)
        self._write_logs()

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            return
        st = torch.load(path, map_location=self.device, weights_only=False)
        if st.get("format") != STATE_FORMAT:
            raise RuntimeError(f"{path} is not a training state of this project")
        version = config_version(st["model_config"])
        if version != CONFIG_VERSION:  # the parameters' order (the optimiser's state) changed with the version
            raise RuntimeError(
                f"{path} was written by an older version of the model code (config version {version}) and cannot "
                f"be resumed; start a new --out with --init-from {path} to keep its weights"
            )
        if st["model_config"] != self.cfg.to_dict():
            raise RuntimeError(f"{path} was trained with another model config; use a new --out")
        self.model.load_state_dict(st["model"])
        self.opt_g.load_state_dict(st["opt_g"])
        self.opt_d.load_state_dict(st["opt_d"])
        self.step, self.elapsed, self.best_score = st["step"], st["elapsed"], st["best_score"]
        self.cover_c.log_weight, self.ssim_c.log_weight = st["cover_log_w"], st["ssim_log_w"]
        self.rng.setstate(st["rng"])
        self.sampler.rng.setstate(st["sampler_rng"])
        torch.set_rng_state(st["torch_rng"])
        for name, rows in (("train_log.parquet", self.log_rows), ("val_log.parquet", self.val_rows)):
            if (self.out / name).exists():
                rows.extend(r for r in pq.read_table(self.out / name).to_pylist() if r["step"] <= self.step)
        print(f"resumed {path} at step {self.step} ({self.elapsed / 60:.1f} min trained)")

    def _init_from(self, path: str) -> None:
        st = torch.load(path, map_location=self.device, weights_only=False)
        # A model checkpoint or a training state, of any version: its weights under today's names.
        if "state_dict" in st:
            raw_config, src = st["config"], migrate(st["config"], st["state_dict"])[1]
        elif "model" in st:
            raw_config = st.get("model_config") or {}
            src = migrate(raw_config, st["model"])[1]
        else:
            raise RuntimeError(f"{path} holds neither a model checkpoint nor a training state")
        own = self.model.state_dict()
        taken = {k: v.float() for k, v in src.items() if k in own and own[k].shape == v.shape}
        src_cfg = config_from_dict(raw_config) if raw_config else None
        if src_cfg is not None and src_cfg.coded and src_cfg.code_layout != self.model.config.code_layout:
            taken.update(widened_for_more_secrets(src, own, build_model(src_cfg).state_dict()))
        elif src_cfg is None or src_cfg.num_secrets != self.model.config.num_secrets:
            taken.update(widened_for_more_secrets(src, own, {}))
        self.model.load_state_dict(taken, strict=False)
        if "cover_log_w" in st:  # a training state: keep its constraint weights, they fit the trained model
            self.cover_c.log_weight, self.ssim_c.log_weight = st["cover_log_w"], st["ssim_log_w"]
        print(f"initialised {len(taken)}/{len(own)} tensors from {path}")

    def _write_logs(self) -> None:
        for name, rows in (("train_log.parquet", self.log_rows), ("val_log.parquet", self.val_rows)):
            if rows:
                # Columns from every row, not the first: a resumed run may log a figure its earlier rows lack (say
                # the noise figure's standard error after --val-noise-draws changed); missing cells are nulls.
                keys = dict.fromkeys(k for r in rows for k in r)
                with atomic_path(self.out / name) as tmp:
                    pq.write_table(pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys}), tmp)

    # ----------------------------------------------------------------------------------------------- step
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        tc, k = self.tc, self.cfg.num_secrets
        cover = self.sampler.batch(tc.batch)
        # Each secret is a graphic with probability ``synthetic_secrets``, else a photo crop (no RNG draw at 0).
        p = tc.synthetic_secrets
        secrets = torch.stack(
            [
                self.graphics.one() if p > 0 and self.rng.random() < p else self.sampler.one()
                for _ in range(tc.batch * k)
            ]
        )
        c = self.cfg.channels
        secrets = secrets.reshape(tc.batch, k * c, tc.crop, tc.crop)
        return cover, secrets  # already on the training device: the sampler cuts them there

    def progress(self) -> float | None:
        """Fraction of a wall-time schedule (``minutes``) trained; None when the schedule counts steps."""
        return None if self.tc.minutes is None else self.elapsed / (self.tc.minutes * 60)

    def finished(self) -> bool:
        progress = self.progress()
        return self.step >= self.tc.steps if progress is None else progress >= 1.0

    def train_step(self) -> dict[str, float | str]:
        """One optimisation step; its figures as Python numbers."""
        return _as_numbers(self._step())

    def _step(self) -> dict[str, Any]:
        """One optimisation step; figures that need no device sync stay tensors (``_as_numbers`` reads them), so a
        GPU step only waits for the two values the constraint weights need."""
        tc, m = self.tc, self.model
        progress = self.progress()
        for opt, base in ((self.opt_g, tc.lr), (self.opt_d, tc.lr_d)):
            for g in opt.param_groups:
                g["lr"] = base * g.get("lr_scale", 1.0) * lr_factor(self.step, tc, progress)
        cover, secrets = self._batch()

        logit_real, score_real = m.discriminator(cover)
        score = score_real.detach() if self.cfg.ablation.score_map else torch.ones_like(score_real)
        residual = m.embed_residual(cover, secrets, score)
        # Warm-up without 8-bit rounding: a fresh embedder's residual is far below one grey level, so rounding would
        # erase it and the revealer would have nothing to learn from (a first run collapsed to a zero residual).
        quantize = D.quantize if self.step >= tc.quantize_from else D.clamp_st
        stego = quantize(m.finish_stego(cover + residual, secrets))
        flipped = (torch.rand(cover.shape[0], device=self.device) < tc.flip_prob).float()
        mask = flipped.reshape(-1, 1, 1, 1)

        def mirror(x: torch.Tensor) -> torch.Tensor:  # the images of the batch drawn for a mirror, mirrored
            return mask * x.flip(-1) + (1 - mask) * x

        seen = mirror(stego)
        attack_name, attack = A.sample_train_attack(self.rng, self.cfg.channels, tc.attack_mix)
        if A.acts_on_residual(attack_name):
            base = mirror(cover)
            seen = quantize(base + attack(seen - base))
        else:
            seen = quantize(attack(seen))
        # With ``deblur``, a blur the pilot shows is undone first, as at inference (the gradient flows through the
        # Wiener filter, not through the estimate of the blur).
        seen = m.restore(seen)
        # Mirror synchronisation decides from the image itself, as at inference; the learned flip head (first
        # checkpoints) is teacher-forced with the true mask instead.
        recovered, flip_logit = m.reveal_aligned(m.unmirror(seen), flipped if self.cfg.legacy.flip_head else None)

        l_secret = db_loss(recovered, secrets)
        l_cover = normalized_mse(stego, cover, tc.cover_psnr_target)
        l_ssim, ssim_val = ssim_loss(stego, cover)
        # Low band (1/8 scale): colour/brightness shifts there are the most visible; normalised like the cover term.
        l_low = normalized_mse(self.pyr.decompose(stego)[-1], self.pyr.decompose(cover)[-1], tc.cover_psnr_target)
        # Curriculum: the secret path first learns on an unconstrained residual, then imperceptibility is phased in
        # (with it from step 0, the residual shrank to nothing before the revealer had learned to read it).
        ramp = min(1.0, max(0.0, (self.step - tc.fidelity_from) / max(1, tc.fidelity_ramp)))
        fidelity = self.cover_c.weight * (l_cover + tc.w_low * l_low) + self.ssim_c.weight * l_ssim
        loss = l_secret + ramp * fidelity
        l_adv = torch.zeros(())
        if self.step >= tc.d_warmup and tc.w_adv > 0 and tc.realfake and not tc.reveal_only:
            l_adv = bce(m.discriminator(stego)[0], 1.0)
            loss = loss + tc.w_adv * l_adv
        # Guidance only where the embedder uses the score map (SRIS-Net): baselines ignore it by design.
        guide_on = m.uses_score_map and self.step >= tc.d_warmup and ramp > 0
        l_guide = guidance_loss(residual, score) if guide_on else torch.zeros(())
        loss = loss + tc.w_guide * l_guide
        l_flip = bce(flip_logit, flipped) if flip_logit is not None else torch.zeros(())
        loss = loss + tc.w_flip * l_flip

        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for g in self.opt_g.param_groups for p in g["params"]], tc.clip)
        self.opt_g.step()

        l_d, l_score = self._discriminator_step(cover, stego, logit_real, score_real)

        psnr_c, ssim_c = torch.stack([psnr01(stego, cover).detach(), ssim_val.detach()]).tolist()  # one sync
        if progress is None:
            t = min(1.0, self.step / max(1.0, tc.target_ramp * tc.steps))
        else:
            t = min(1.0, progress / max(1e-9, tc.target_ramp))
        self.cover_c.target = tc.cover_psnr_start + t * (tc.cover_psnr_target - tc.cover_psnr_start)
        self.ssim_c.target = tc.ssim_start + t * (tc.ssim_target - tc.ssim_start)
        if ramp > 0 and not tc.reveal_only:
            self.cover_c.update(psnr_c)
            self.ssim_c.update(ssim_c)
        self.step += 1
        return {
            "loss": loss.detach(),
            "psnr_cover": psnr_c,
            "ssim_cover": ssim_c,
            "psnr_secret": psnr01(recovered.detach().clamp(0, 1), secrets),
            "l_low": l_low.detach(),
            "l_adv": l_adv.detach(),
            "l_guide": l_guide.detach(),
            "l_flip": l_flip.detach(),
            "l_d": l_d.detach(),
            "l_score": l_score.detach(),
            "lambda_cover": self.cover_c.weight,
            "lambda_ssim": self.ssim_c.weight,
            "target_cover": self.cover_c.target,
            "target_ssim": self.ssim_c.target,
            "grad_norm": gnorm.detach(),
            "attack": attack_name,
        }

    def _discriminator_step(
        self, cover: torch.Tensor, stego: torch.Tensor, logit_real: torch.Tensor, score_real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real/fake and score-map losses of the discriminator (and the light score head's distillation), one
        optimiser step; none when only the revealer trains. Returns (l_d, l_score)."""
        if self.tc.reveal_only:
            return torch.zeros(()), torch.zeros(())
        m = self.model
        self.opt_d.zero_grad(set_to_none=True)
        if self.tc.realfake:
            logit_fake = m.discriminator(stego.detach())[0]
            l_d = bce(logit_real, 1.0) + bce(logit_fake, 0.0)
        else:
            l_d = torch.zeros(())
        l_score = (score_real - texture_target(cover)).abs().mean()
        # The light score head (if any) is distilled from the discriminator's map, which the embedder trains with.
        if m.light_score is not None:
            l_score = l_score + (m.light_score.score_map(cover) - score_real.detach()).abs().mean()
        (l_d + self.tc.w_score * l_score).backward()
        self.opt_d.step()
        return l_d, l_score

    # ----------------------------------------------------------------------------------------------- validation
    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        from pipeline.evaluate.quick import quick_validation

        covers, secrets = self.val
        self.model.refresh_restore()  # its calibration follows the thumbnail code's (slowly) trained weights
        res = quick_validation(
            self.model, covers.to(self.device), secrets.to(self.device), noise_draws=self.tc.val_noise_draws
        )
        res["step"] = self.step
        res["minutes"] = self.elapsed / 60
        return res

    # ----------------------------------------------------------------------------------------------- run
    def run(self) -> None:
        import signal

        # SIGTERM (a scheduler's stop, `kill`) ends the run like Ctrl-C: state saved, resumable.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        tc = self.tc
        start = time.time()
        base_elapsed = self.elapsed
        last_ckpt = time.time()
        total = tc.steps if tc.minutes is None else None  # a wall-time schedule: the step count is not known
        bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, mininterval=2.0)
        window_t, window_n = time.time(), 0
        stop_reason = "done"
        try:
            while not self.finished():
                row = self._step()
                window_n += tc.batch
                self.elapsed = base_elapsed + time.time() - start
                last = self.finished()
                if self.step % tc.log_every == 0 or last:
                    row = _as_numbers(row)
                    ips = window_n / (time.time() - window_t)
                    window_t, window_n = time.time(), 0
                    row.update(step=self.step, minutes=self.elapsed / 60, images_per_s=ips)
                    self.log_rows.append(row)
                    bar.set_postfix(
                        img_s=f"{ips:.1f}",
                        cov=f"{row['psnr_cover']:.1f}",
                        sec=f"{row['psnr_secret']:.1f}",
                        ssim=f"{row['ssim_cover']:.3f}",
                        lc=f"{row['lambda_cover']:.2f}",
                    )
                bar.update(1)
                if self.val is not None and (self.step % tc.val_every == 0 or last):
                    self._validate_and_keep()
                if time.time() - last_ckpt > tc.ckpt_minutes * 60:
                    self.save_state()
                    last_ckpt = time.time()
                if tc.max_minutes is not None and time.time() - start > tc.max_minutes * 60:
                    stop_reason = f"time budget of {tc.max_minutes} min reached"
                    break
        except KeyboardInterrupt:
            stop_reason = "interrupted"
        finally:
            bar.close()
            self.save_state()
            save_checkpoint(self.model, self.out / "model.pt", meta=self.meta())
            self.plot()
        print(f"stopped at step {self.step}: {stop_reason}; checkpoints in {self.out}")

    def meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "minutes": round(self.elapsed / 60, 2),
            "train_config": asdict(self.tc),
            "validation": self.val_rows[-1] if self.val_rows else None,
        }

    def _validate_and_keep(self) -> None:
        res = self.validate()
        self.val_rows.append(res)
        tqdm.write(
            f"step {self.step}: cover {res['psnr_cover']:.2f} dB / SSIM {res['ssim_cover']:.4f}, secret "
            f"{res['psnr_secret']:.2f} dB, worst attack {res['psnr_secret_worst']:.2f} dB, margin {res['margin']:.2f}"
        )
        from pipeline.evaluate.quick import bar_score

        score = bar_score(res)
        if score > self.best_score:
            self.best_score = score
            save_checkpoint(self.model, self.out / "best.pt", meta=self.meta())
        self._write_logs()
        self.plot()

    def plot(self) -> None:
        if self.log_rows:
            from pipeline.train.curves import plot_curves

            plot_curves(self.log_rows, self.val_rows, self.out / "curves.png")


def widened_for_more_secrets(
    src: dict[str, torch.Tensor], own: dict[str, torch.Tensor], src_fresh: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Tensors of a model with fewer secrets (say K = 1) made to fit one with more: every tensor whose shape differs
    from its counterpart in one dimension only, where the source is the smaller, is copied into the leading slice of
    that dimension (the first secret's inputs or outputs; channels are laid out secret by secret).

    The thumbnail code's tensors (``own`` holds the new model's analytic code) take what training changed in the
    source's code (``src - src_fresh``, ``src_fresh`` an untrained model of the source's config) on top of their
    own analytic code, also where the shape is the same: the cancellation maps remove every coefficient the new
    layout writes, and a copied source map would leave the new secrets' coefficients full of the cover. The learned
    layers' new slices start at zero, so the widened model starts as the source model for the first secret, with the
    other secrets carried by the code alone until training teaches the learned path.
    """
    out = {}
    for k, v in src.items():
        if k not in own or own[k].dim() != v.dim():
            continue
        code = k.startswith(THUMBNAIL) and k in src_fresh
        if own[k].shape == v.shape:
            if code:
                out[k] = own[k].detach().float() + (v.float() - src_fresh[k].float())
            continue
        dims = [d for d in range(v.dim()) if own[k].shape[d] != v.shape[d]]
        if len(dims) != 1 or own[k].shape[dims[0]] < v.shape[dims[0]]:
            continue
        w = own[k].detach().clone().float() if code else torch.zeros_like(own[k], dtype=torch.float32)
        change = v.float() - src_fresh[k].float() if code else v.float()
        w.narrow(dims[0], 0, v.shape[dims[0]]).add_(change)
        out[k] = w
    return out


def _as_numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in row.items()}


def train(tc: TrainConfig) -> Path:
    trainer = Trainer(tc)
    trainer.run()
    return Path(tc.out)
