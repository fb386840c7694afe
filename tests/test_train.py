"""Training plumbing (issue 3): real short runs of the ``tiny`` preset on synthetic photos written as JPEG/PNG files.

Checkpoints, logs and curves are written; a run resumes where it stopped (also after a kill that left logs newer
than its last checkpoint); the validation split is by whole photo; every baseline and ablation trains via the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.photos import center_square, is_validation, square_crops
from pipeline.model import build_model
from pipeline.model.checkpoint import load_model
from pipeline.model.hiding import REVEAL_PATH
from pipeline.train.loop import TrainConfig, Trainer, train

VAL_FRACTION = 0.2  # the default of TrainConfig and of the CLI


def _names(n_train: int, n_val: int) -> list[str]:
    """File names whose stable hash puts ``n_val`` of them in the validation split, alternating JPEG and PNG."""
    train_names, val_names = [], []
    i = 0
    while len(train_names) < n_train or len(val_names) < n_val:
        name = f"photo_{i:03d}.{'jpg' if i % 2 else 'png'}"
        side = val_names if is_validation(name, VAL_FRACTION) else train_names
        if len(side) < (n_val if side is val_names else n_train):
            side.append(name)
        i += 1
    return sorted(train_names + val_names)


@pytest.fixture
def photos(photo_factory, tmp_path: Path) -> Path:
    """Six photo-like images of different sizes (four train, two validation), as real JPEG and PNG files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(_names(4, 2)):
        img = Image.fromarray(photo_factory(80 + 16 * i, 112 - 8 * i, seed=i))
        img.save(folder / name, **({"quality": 92} if name.endswith(".jpg") else {}))
    return folder


def _config(data: Path, out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(preset="tiny", crop=64, batch=2, val_size=64, val_every=2, log_every=1, warmup=2, d_warmup=2)
    return TrainConfig(data=str(data), out=str(out), steps=steps, **{**base, **kw})


def _steps(path: Path) -> list[int]:
    return pq.read_table(path).column("step").to_pylist()


def test_training_run_writes_checkpoints_logs_and_curves(photos: Path, tmp_path: Path) -> None:
    out = train(_config(photos, tmp_path / "run", steps=4))
    for name in ("last.pt", "best.pt", "model.pt", "split.json", "train_config.json"):
        assert (out / name).is_file(), name
    model = load_model(out / "model.pt")
    assert model.config.network.arch == "sris" and model.checkpoint_meta["step"] == 4
    assert load_model(out / "best.pt").checkpoint_meta["validation"] is not None
    with torch.inference_mode():
        stego = model.embed(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert stego.shape == (1, 3, 64, 64)

    train_log = pq.read_table(out / "train_log.parquet").to_pylist()
    assert [r["step"] for r in train_log] == [1, 2, 3, 4]
    assert all(r["images_per_s"] > 0 and r["psnr_cover"] > 0 for r in train_log)
    val_log = pq.read_table(out / "val_log.parquet").to_pylist()
    assert [r["step"] for r in val_log] == [2, 4]
    assert all("psnr_secret_hflip" in r and "margin" in r for r in val_log)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validation_split_is_by_whole_photo(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(_config(photos, out, steps=1))
    split = json.loads((out / "split.json").read_text())
    assert split["validation"] and split["train"]
    assert not set(split["train"]) & set(split["validation"])
    assert sorted(split["train"] + split["validation"]) == sorted(p.name for p in photos.iterdir())


def test_resume_continues_the_step_counter_and_never_logs_a_step_twice(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_config(photos, out, steps=2))
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["step"] == 2
    shutil.copy(out / "last.pt", tmp_path / "last_at_2.pt")

    trainer = Trainer(_config(photos, out, steps=4))
    assert trainer.step == 2  # resumed, not restarted
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, first["model"][name]), name
    trainer.run()
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 4
    assert _steps(out / "train_log.parquet") == [1, 2, 3, 4]
    assert _steps(out / "val_log.parquet") == [2, 4]
    assert load_model(out / "model.pt").checkpoint_meta["step"] == 4

    # A kill can leave logs written past the last checkpoint: resuming from step 2 must not log steps 3-4 twice.
    shutil.copy(tmp_path / "last_at_2.pt", out / "last.pt")
    train(_config(photos, out, steps=6))
    assert _steps(out / "train_log.parquet") == [1, 2, 3, 4, 5, 6]
    assert _steps(out / "val_log.parquet") == [2, 4, 6]

    with pytest.raises(RuntimeError, match="another model config"):
        Trainer(_config(photos, out, steps=8, model_overrides={"num_secrets": 2}))


CLI_VARIANTS = {
    "hinet": (["--baseline", "hinet"], {"arch": "hinet"}),
    "unet": (["--baseline", "unet"], {"arch": "unet"}),
    "no-lpfdd": (["--no-lpfdd"], {"lpfdd": False}),
    "no-glem-global": (["--no-glem-global"], {"glem_global": False}),
    "no-sfm": (["--no-sfm"], {"sfm": False}),
    "no-score-map": (["--no-score-map"], {"score_map": False}),
    "no-thumbnail-code": (["--no-thumbnail-code"], {"thumbnail_code": False}),
    "gray-k2": (["--channels", "1", "--secrets", "2"], {"channels": 1, "num_secrets": 2}),
}
CLI_COMMON = ["--config", "tiny", "--steps", "2", "--batch", "2", "--crop", "64", "--val-every", "2"]


@pytest.mark.parametrize("variant", list(CLI_VARIANTS))
def test_cli_trains_every_baseline_and_ablation(variant: str, photos: Path, tmp_path: Path) -> None:
    flags, expected = CLI_VARIANTS[variant]
    out = tmp_path / variant
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--out", str(out), *CLI_COMMON, *flags])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model = load_model(out / "model.pt")
    assert model.config == model.config.with_overrides(**expected)  # each expected field holds its value
    assert model.checkpoint_meta["step"] == 2
    assert _steps(out / "val_log.parquet") == [2]  # (the CLI logs training rows every 25 steps)


def test_cli_reports_bad_data_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["train", "--data", str(empty), "--out", str(tmp_path / "run"), *CLI_COMMON])
    assert result.exit_code == 1
    assert "error:" in result.output and str(empty) in result.output


def test_fine_tuning_starts_from_the_given_weights_without_warm_ups(photos: Path, tmp_path: Path) -> None:
    first = train(_config(photos, tmp_path / "first", steps=2))
    source = torch.load(first / "last.pt", weights_only=False)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(photos), "--out", str(out), *CLI_COMMON, "--init-from", str(first / "last.pt")],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "initialised" in result.output
    tc = json.loads((out / "train_config.json").read_text())
    assert tc["init_from"] == str(first / "last.pt")
    assert tc["quantize_from"] == tc["d_warmup"] == tc["fidelity_ramp"] == 0
    assert tc["cover_psnr_start"] == tc["cover_psnr_target"]
    # Constraint weights come from the training state (two steps of training moved them off their start value).
    trainer = Trainer(TrainConfig.from_dict({**tc, "out": str(tmp_path / "again")}))
    assert trainer.cover_c.log_weight == source["cover_log_w"]
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, source["model"][name]), name
    # --lambda-ssim restarts that weight where it is told, the other one still comes from the state.
    relaxed = Trainer(TrainConfig.from_dict({**tc, "out": str(tmp_path / "relaxed"), "lambda_ssim_start": 30.0}))
    assert relaxed.ssim_c.weight == pytest.approx(30.0) and relaxed.cover_c.log_weight == source["cover_log_w"]


def test_attack_mixtures_draw_only_their_conditions() -> None:
    import random

    from pipeline.train.attacks import TRAIN_MIXES, sample_train_attack

    rng = random.Random(0)
    labels = [sample_train_attack(rng, 3, "bar")[0] for _ in range(400)]
    kinds = {label.split()[0] for label in labels}
    assert kinds == set(TRAIN_MIXES["bar"])
    noise = [float(label.split()[1][1:]) for label in labels if label.startswith("noise")]
    assert max(noise) <= 7.0 and min(noise) >= 1.0
    assert "gaussian s2.0" not in labels
    assert all(not label.startswith("jpeg") for label in (sample_train_attack(rng, 1, "bar")[0] for _ in range(200)))
    with pytest.raises(ValueError, match="unknown attack mixture"):
        sample_train_attack(rng, 3, "nope")
    # 'noise' draws its noise from the upper part of the bar's range, and more often than 'blur' does
    heavy = [sample_train_attack(rng, 3, "noise")[0] for _ in range(400)]
    sigmas = [float(label.split()[1][1:]) for label in heavy if label.startswith("noise")]
    assert min(sigmas) >= 3.0 and max(sigmas) <= 7.0
    assert len(sigmas) > sum(
        label.startswith("noise") for label in (sample_train_attack(rng, 3, "blur")[0] for _ in range(400))
    )
    # 'noise-heavy': the same sigma range, noise more often still and the filters less often than in 'noise'
    heavier = [sample_train_attack(rng, 3, "noise-heavy")[0] for _ in range(400)]
    sigmas2 = [float(label.split()[1][1:]) for label in heavier if label.startswith("noise")]
    assert min(sigmas2) >= 3.0 and max(sigmas2) <= 7.0 and len(sigmas2) > len(sigmas)
    assert sum(label.startswith("mean") for label in heavier) < sum(label.startswith("mean") for label in heavy)
    # 'noise-most': noise more often than 'noise-heavy', in the same range
    most = [sample_train_attack(rng, 3, "noise-most")[0] for _ in range(400)]
    sigmas3 = [float(label.split()[1][1:]) for label in most if label.startswith("noise")]
    assert min(sigmas3) >= 3.0 and max(sigmas3) <= 7.0 and len(sigmas3) > len(sigmas2)
    # 'published': JPEG down to quality 50 and resizing down by 0.4-0.9, beside every laboratory condition
    published = [sample_train_attack(rng, 3, "published")[0] for _ in range(600)]
    assert {label.split()[0] for label in published} == set(TRAIN_MIXES["published"])
    qualities = [float(label.split()[1][1:]) for label in published if label.startswith("jpeg")]
    factors = [float(label.split()[1][1:]) for label in published if label.startswith("shrink")]
    assert min(qualities) < 60 and max(qualities) <= 95 and min(factors) >= 0.4 and max(factors) <= 0.9


def test_shrink_keeps_the_size_and_loses_the_finest_detail() -> None:
    from pipeline.core.distortions import shrink

    stripes = torch.zeros(2, 3, 64, 48, requires_grad=True)
    with torch.no_grad():
        stripes[..., ::2] = 1.0
    out = shrink(stripes, 0.5)
    assert out.shape == stripes.shape and out.std() < 0.2 * stripes.std()
    out.sum().backward()  # differentiable: training passes gradients through it
    assert stripes.grad is not None and stripes.grad.abs().sum() > 0


def test_rescale_attack_is_a_mild_blur_that_keeps_the_image() -> None:
    from pipeline.core.distortions import rescale

    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 68, 68), 5, stride=1)  # (1, 3, 64, 64), smooth
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1.0  # the finest pattern an image can hold
    assert (rescale(smooth, 4.0) - smooth).abs().mean() < 0.02
    assert rescale(stripes, 4.0).std() < 0.5 * stripes.std()


def test_only_models_that_work_untrained_skip_the_warm_ups() -> None:
    """SRIS-Net with its thumbnail code (or a fine-tune) trains with its targets from step 0; a baseline keeps the
    warm-ups."""
    coded = TrainConfig(data="d", out="o", preset="fast", cover_psnr_target=37.0)
    assert coded.works_from_step_zero
    fast = coded.without_warmups()
    assert fast.quantize_from == fast.d_warmup == 0 and fast.cover_psnr_start == 37.0 and fast.warmup == coded.warmup
    for overrides in ({"arch": "hinet"}, {"thumbnail_code": False}):
        assert not TrainConfig(data="d", out="o", preset="fast", model_overrides=overrides).works_from_step_zero
    tuned = TrainConfig(data="d", out="o", preset="fast", model_overrides={"arch": "unet"}, init_from="x.pt")
    assert tuned.works_from_step_zero and tuned.without_warmups().warmup == 50


def test_best_checkpoint_ranks_criteria_met_before_margin() -> None:
    """A validation that keeps the SSIM bar beats one with a better secret that broke it (best.pt's ranking)."""
    from pipeline.evaluate.quick import bar_criteria, bar_score

    def result(ssim: float, secret: float) -> dict:
        res = {"psnr_cover": 37.0, "ssim_cover": ssim, "psnr_secret": secret, "psnr_secret_worst": secret - 3}
        res["margin"] = min(bar_criteria(res).values())
        return res

    keeps, breaks = result(0.952, 25.0), result(0.949, 26.0)
    assert breaks["margin"] > keeps["margin"]  # the bare margin would have kept the broken one
    assert bar_score(keeps) > bar_score(breaks)
    assert bar_score(result(0.952, 25.5)) > bar_score(keeps)  # same criteria met: the larger margin wins


def test_reveal_only_training_moves_the_revealer_and_nothing_else(photos: Path, tmp_path: Path) -> None:
    """--reveal-only: the revealer learns; embedder, score heads, discriminator and the constraint weights stay as
    they were, so the stego of a given cover and secret is bit-identical after training."""
    first = train(_config(photos, tmp_path / "first", steps=2, model_overrides={"light_score": True}))
    tc = _config(
        photos, tmp_path / "reveal", steps=3, init_from=str(first / "model.pt"), reveal_only=True,
        model_overrides={"light_score": True},
    )  # fmt: skip
    trainer = Trainer(tc)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    weights = (trainer.cover_c.log_weight, trainer.ssim_c.log_weight)
    for _ in range(3):
        row = trainer.train_step()
    assert row["l_d"] == 0 and row["l_adv"] == 0
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(REVEAL_PATH) for k in changed)
    assert (trainer.cover_c.log_weight, trainer.ssim_c.log_weight) == weights


def test_wall_time_schedule_decays_over_minutes_and_ends_the_run(photos: Path, tmp_path: Path) -> None:
    """``--minutes``: the cosine decay follows the fraction of the wall time trained, and the run stops when it is
    spent, whatever ``steps`` says (a GPU lent for a fixed time, steps/s unknown in advance)."""
    from pipeline.train.loop import lr_factor

    tc = _config(photos, tmp_path / "unused", steps=10**9, minutes=0.05, warmup=2)
    assert lr_factor(10, tc, progress=0.0) == pytest.approx(1.0)
    assert lr_factor(10, tc, progress=0.5) == pytest.approx(tc.min_lr_ratio + (1 - tc.min_lr_ratio) / 2)
    assert lr_factor(10, tc, progress=1.0) == pytest.approx(tc.min_lr_ratio)
    assert lr_factor(0, tc, progress=0.9) == pytest.approx(0.5)  # the warm-up still counts steps

    trainer = Trainer(_config(photos, tmp_path / "run", steps=10**9, minutes=0.05, val_every=10**6))
    trainer.run()
    assert 0 < trainer.step < 10**9 and trainer.elapsed >= 3.0
    rows = pq.read_table(tmp_path / "run" / "train_log.parquet").to_pylist()
    assert rows[-1]["step"] == trainer.step  # the last step is logged, as the end of a step schedule is
    assert rows[-1]["target_cover"] == pytest.approx(tc.cover_psnr_target)  # the target ramp ran over the minutes
    assert len(_steps(tmp_path / "run" / "val_log.parquet")) == 1  # validated once, at the end


def test_crops_are_drawn_on_the_training_device(photos: Path) -> None:
    """On a GPU the photos and every crop live there; the "meta" device checks the placement without one."""
    from pipeline.io.photos import load_photos
    from pipeline.train.data import CropSampler

    train_imgs = load_photos(str(photos))[0]
    sampler = CropSampler(train_imgs, 64, device="meta")
    assert all(p.device.type == "meta" for p in sampler.photos)
    batch = sampler.batch(3)
    assert batch.device.type == "meta" and batch.shape == (3, 3, 64, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_crops_and_seeded_noise_are_the_same_on_cpu_and_gpu(photos: Path) -> None:
    from pipeline.core.distortions import gaussian_noise
    from pipeline.io.photos import load_photos
    from pipeline.train.data import CropSampler

    train_imgs = load_photos(str(photos))[0]
    cpu, gpu = CropSampler(train_imgs, 64, seed=3), CropSampler(train_imgs, 64, seed=3, device="cuda")
    assert torch.allclose(cpu.batch(4), gpu.batch(4).cpu(), atol=1 / 255 + 1e-6)
    x = torch.full((2, 3, 16, 16), 0.5)
    a = gaussian_noise(x, 5.0, torch.Generator().manual_seed(0))
    b = gaussian_noise(x.cuda(), 5.0, torch.Generator().manual_seed(0))  # a CPU generator drives GPU noise
    assert torch.equal(a, b.cpu())


def test_synthetic_secrets_replace_the_drawn_share_of_photo_crops(photos: Path, tmp_path: Path) -> None:
    """``--synthetic-secrets P``: each training secret is a random graphic with probability P (the run's seed + 1
    draws them), the rest stay photo crops; the covers are always photos."""
    from pipeline.train.graphics import GraphicsSampler

    every = Trainer(_config(photos, tmp_path / "all", steps=1, batch=4, synthetic_secrets=1.0))
    cover, secrets = every._batch()
    assert torch.equal(secrets, GraphicsSampler(64, 3, seed=1).batch(4))
    assert not torch.equal(cover, GraphicsSampler(64, 3, seed=1).batch(4))

    none = Trainer(_config(photos, tmp_path / "none", steps=1, batch=4))
    graphics = GraphicsSampler(64, 3, seed=1).batch(64).flatten(1)
    secrets = torch.cat([none._batch()[1] for _ in range(8)]).flatten(1)
    assert (
        torch.cdist(secrets, graphics, compute_mode="donot_use_mm_for_euclid_dist").min() > 0
    )  # no graphic among them

    half = Trainer(_config(photos, tmp_path / "half", steps=2, batch=8, synthetic_secrets=0.5))
    drawn = torch.cat([half._batch()[1] for _ in range(4)]).flatten(1)
    distance = torch.cdist(
        drawn, GraphicsSampler(64, 3, seed=1).batch(32).flatten(1), compute_mode="donot_use_mm_for_euclid_dist"
    )
    assert 4 <= int((distance.min(dim=1).values == 0).sum()) <= 28
    assert half.train_step()["psnr_secret"] > 0


def test_validate_can_hide_graphics_instead_of_photos(photos: Path, tmp_path: Path) -> None:
    out = train(_config(photos, tmp_path / "run", steps=2))
    runs = {}
    for extra in ([], ["--graphics-secrets"]):
        args = ["validate", "--data", str(photos), "--checkpoint", str(out / "model.pt"), "--size", "64", "--json"]
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 4, result.output  # two steps of a tiny model do not meet the bar
        runs[bool(extra)] = json.loads(result.output)
    assert runs[True]["images"] == runs[False]["images"] == 2
    assert runs[True]["psnr_secret"] != runs[False]["psnr_secret"]


def test_validate_averages_the_noise_figure_over_independent_draws(photos: Path, tmp_path: Path) -> None:
    """``--noise-draws N``: the noise figure is the mean of the N seeded draws (draw 0 is the single draw) with its
    standard error; every other figure is unchanged."""
    from pipeline.core.metrics import to_255
    from pipeline.core.photos import validation_pairs
    from pipeline.evaluate.quick import _secret_psnr, noise_draw
    from pipeline.io.photos import load_photos
    from pipeline.model.checkpoint import load_model

    out = train(_config(photos, tmp_path / "run", steps=2))
    args = ["validate", "--data", str(photos), "--checkpoint", str(out / "model.pt"), "--size", "64", "--json"]
    one, three = (json.loads(CliRunner().invoke(main, [*args, "--noise-draws", n]).output) for n in ("1", "3"))
    assert "psnr_secret_noise5_se" not in one
    assert {k: v for k, v in three.items() if "noise5" not in k and k not in ("psnr_secret_worst", "margin")} == {
        k: v for k, v in one.items() if "noise5" not in k and k not in ("psnr_secret_worst", "margin")
    }

    model = load_model(str(out / "model.pt")).eval()
    covers, secrets = validation_pairs(load_photos(str(photos), 3)[1], 64, 1)
    with torch.inference_mode():
        stego8 = to_255(model.embed(covers, secrets)) / 255
        draws = torch.tensor([_secret_psnr(model, noise_draw(stego8, s), secrets, 8) for s in range(3)])
    assert one["psnr_secret_noise5"] == pytest.approx(draws[0].item(), abs=1e-4)
    assert three["psnr_secret_noise5"] == pytest.approx(draws.mean().item(), abs=1e-4)
    assert three["psnr_secret_noise5_se"] == pytest.approx((draws.std() / 3**0.5).item(), abs=1e-4)
    assert three["psnr_secret_noise5_se"] > 0
    assert CliRunner().invoke(main, [*args, "--noise-draws", "0"]).exit_code == 2


def test_training_validation_can_average_the_noise_figure(photos: Path, tmp_path: Path) -> None:
    """``val_noise_draws``: the run's validations (and so best.pt's ranking) use the mean of that many noise draws,
    the figure ``validate --noise-draws`` prints for the same weights."""
    out = train(_config(photos, tmp_path / "run", steps=2, val_noise_draws=4))
    logged = pq.read_table(out / "val_log.parquet").to_pylist()[-1]
    args = ["validate", "--data", str(photos), "--checkpoint", str(out / "model.pt"), "--size", "64", "--json"]
    four = json.loads(CliRunner().invoke(main, [*args, "--noise-draws", "4"]).output)
    one = json.loads(CliRunner().invoke(main, args).output)
    assert logged["psnr_secret_noise5"] == pytest.approx(four["psnr_secret_noise5"], abs=1e-3)
    assert logged["psnr_secret_noise5_se"] == pytest.approx(four["psnr_secret_noise5_se"], abs=1e-3)
    assert four["psnr_secret_noise5"] != pytest.approx(one["psnr_secret_noise5"], abs=1e-4)


def test_a_resumed_run_keeps_the_columns_its_later_validations_add(photos: Path, tmp_path: Path) -> None:
    """Resumed with more noise draws, the validation log gains the standard error's column; the earlier rows hold
    nulls there instead of the column being dropped (the logs' columns come from every row)."""
    train(_config(photos, tmp_path / "run", steps=2))
    out = train(_config(photos, tmp_path / "run", steps=4, val_noise_draws=2))
    rows = pq.read_table(out / "val_log.parquet").to_pylist()
    assert [r["step"] for r in rows] == [2, 4]
    assert rows[0]["psnr_secret_noise5_se"] is None
    assert rows[1]["psnr_secret_noise5_se"] > 0


def test_without_the_realfake_task_the_discriminator_learns_its_score_map_alone(photos: Path, tmp_path: Path) -> None:
    """--no-realfake (ablation): no real/fake loss, no adversarial loss; the trunk and the score head still learn
    the texture target, and the real/fake head never moves."""
    trainer = Trainer(_config(photos, tmp_path / "run", steps=3, d_warmup=0, realfake=False))
    disc = trainer.model.discriminator
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    for _ in range(3):
        row = trainer.train_step()
    assert row["l_d"] == 0 and row["l_adv"] == 0 and row["l_score"] > 0
    after = disc.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("score.") for k in changed) and any(k.startswith("trunk.") for k in changed)
    assert not any(k.startswith("realfake") for k in changed)
    with_task = Trainer(_config(photos, tmp_path / "with", steps=3, d_warmup=0))
    assert with_task.train_step()["l_d"] > 0


def test_short_runs_scale_their_warm_ups_and_long_ones_keep_them() -> None:
    short = TrainConfig(data="d", out="o", steps=300).warmups_scaled()
    assert (short.d_warmup, short.quantize_from, short.fidelity_ramp, short.warmup) == (15, 30, 50, 10)
    assert TrainConfig(data="d", out="o", steps=9000).warmups_scaled() == TrainConfig(data="d", out="o", steps=9000)


def test_a_one_secret_model_seeds_a_two_secret_one(photos: Path, tmp_path: Path) -> None:
    """--init-from a K = 1 model into K = 2: every layer sized by K takes the first secret's weights from the
    source; the learned layers' new slices start at zero, the thumbnail code's at its analytic code for the second
    secret (base and detail code), and the widened model reveals two secrets."""
    first = train(_config(photos, tmp_path / "k1", steps=2))
    source = load_model(first / "model.pt")
    overrides = {"num_secrets": 2, "detail_secrets": 2}
    wide = Trainer(
        _config(photos, tmp_path / "k2", steps=1, init_from=str(first / "model.pt"), model_overrides=overrides)
    ).model.eval()
    fresh = build_model(wide.config)
    inputs = (
        "embedder.stem_secret.weight",
        "thumbnail.writer.base_write.weight",
        "thumbnail.writer.detail_write.weight",
    )
    for name in inputs:  # input channels by K
        old, new = source.state_dict()[name], wide.state_dict()[name]
        n = old.shape[1]
        assert new.shape[1] == 2 * n and torch.equal(new[:, :n], old)
        rest = fresh.state_dict()[name][:, n:] if name.startswith("thumbnail.") else torch.zeros_like(new[:, n:])
        assert torch.equal(new[:, n:], rest), name
    outputs = ("revealer.head.weight", "thumbnail.reader.base_read.weight", "thumbnail.reader.detail_read.weight")
    for name in outputs:  # output channels by K
        old, new = source.state_dict()[name], wide.state_dict()[name]
        assert torch.equal(new[: old.shape[0]], old), name
    assert wide.revealer.head.weight[source.revealer.head.out_channels :].abs().max() == 0
    # The cancellation maps keep what training changed in the source's and cancel the new secrets' coefficients too
    # (a copied source map left them full of the cover: the second secret read at 17 dB instead of 26).
    fresh_source = build_model(source.config)
    for name in ("thumbnail.writer.base_cancel.weight", "thumbnail.writer.detail_cancel.weight"):
        change = source.state_dict()[name] - fresh_source.state_dict()[name]
        assert torch.allclose(wide.state_dict()[name], fresh.state_dict()[name] + change, atol=1e-6), name
        assert not torch.allclose(wide.state_dict()[name], source.state_dict()[name]), name
    torch.manual_seed(0)
    cover, secrets = torch.rand(2, 3, 64, 64), torch.rand(2, 6, 64, 64)
    with torch.inference_mode():
        assert wide.reveal(wide.embed(cover, secrets)).shape == (2, 6, 64, 64)


def test_square_crops_are_seeded_and_start_with_the_centre_when_asked() -> None:
    g = torch.Generator().manual_seed(0)
    photos = [torch.randint(0, 256, (3, 40 + 10 * i, 60), generator=g, dtype=torch.uint8) for i in range(3)]
    plain = square_crops(photos, 2, 32, seed=5)
    assert plain.shape == (6, 3, 32, 32) and plain.min() >= 0 and plain.max() <= 1
    assert torch.equal(plain, square_crops(photos, 2, 32, seed=5))
    assert not torch.equal(plain, square_crops(photos, 2, 32, seed=6))
    with_centre = square_crops(photos, 2, 32, seed=5, centre=True)
    assert with_centre.shape == (9, 3, 32, 32)
    assert torch.equal(with_centre[0], center_square(photos[0], 32))
    assert torch.equal(with_centre[1:3], plain[:2])  # the same random crops after the centre


def test_train_options_are_generated_from_the_config_fields() -> None:
    """``train``'s options come from ``TrainConfig``'s and the model config's fields (their metadata): each one sets a
    field, with the field's default; none is written by hand but --scale-warmups (which transforms a config)."""
    import click

    from pipeline.cli_fields import field_options
    from pipeline.model.config import ModelConfig
    from pipeline.train.config import TrainConfig

    command = main.get_command(click.Context(main), "train")
    params = {p.opts[0]: p for p in command.params if isinstance(p, click.Option) and p.opts[0] != "--help"}
    fields_ = field_options(TrainConfig) + field_options(ModelConfig)
    assert set(params) == {o.flag for o in fields_} | {"--scale-warmups"}
    defaults = {f.name: f.default for f in __import__("dataclasses").fields(TrainConfig)}
    for o in field_options(TrainConfig):
        if o.default is not None and not o.is_flag:
            assert params[o.flag].default == (str(o.default) if params[o.flag].type.name == "choice" else o.default)
            assert o.default == defaults[o.path], o.flag
    assert len(params) >= 43  # every option the command had by hand
