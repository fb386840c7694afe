"""SRIS-Net and its baselines (issue 2): pyramid inverse, shapes, gradients, score map, model-info, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.model import PRESETS, build_model, get_config
from pipeline.model.baselines import HaarDWT, HiNetEmbedder, HiNetRevealer, UNetEmbedder, UNetRevealer
from pipeline.model.checkpoint import CheckpointError, load_model, save_checkpoint
from pipeline.model.hiding import HidingModel
from pipeline.model.sris.lpfdd import LaplacianPyramid
from pipeline.model.sris.net import SRISEmbedder, SRISRevealer
from pipeline.train.loop import TrainConfig, Trainer

ARCHS = ("sris", "hinet", "unet")


def _inputs(cfg, n: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cover = torch.rand(batch, cfg.channels, n, n, generator=g)
    secrets = torch.rand(batch, cfg.num_secrets * cfg.channels, n, n, generator=g)
    return cover, secrets


def _size(cfg, at_least: int = 32) -> int:
    """The smallest multiple of the model's size multiple that is at least ``at_least``."""
    m = cfg.multiple
    return -(-at_least // m) * m


# ------------------------------------------------------------------------------------------------ invertible parts
@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(31, 31), (32, 32), (17, 40), (64, 33), (5, 6)])
def test_pyramid_reconstructs_its_input(levels: int, size: tuple[int, int]) -> None:
    torch.manual_seed(levels)
    x = torch.randn(2, 5, *size)
    pyr = LaplacianPyramid(levels)
    bands = pyr.decompose(x)
    assert len(bands) == levels + 1
    h, w = size
    for band in bands:
        assert band.shape[-2:] == (h, w)
        h, w = -(-h // 2), -(-w // 2)
    assert (pyr.reconstruct(bands) - x).abs().max().item() < 1e-5


@pytest.mark.parametrize("levels", [1, 2])
def test_haar_dwt_is_orthonormal_and_invertible(levels: int) -> None:
    x = torch.randn(2, 3, 32, 48)
    dwt = HaarDWT(levels)
    y = dwt(x)
    assert y.shape == (2, 3 * 4**levels, 32 // 2**levels, 48 // 2**levels)
    assert torch.allclose(y.square().sum(), x.square().sum(), rtol=1e-5)  # energy preserved
    assert (dwt.inverse(y) - x).abs().max().item() < 1e-5
    # The LL band of one level is the 2x2 block mean times 2 (orthonormal scaling).
    if levels == 1:
        ll = y.reshape(2, 3, 4, 16, 24)[:, :, 0]
        assert torch.allclose(ll, 2 * torch.nn.functional.avg_pool2d(x, 2), atol=1e-5)


def test_hinet_coupling_is_exactly_invertible_with_the_true_lost_branch() -> None:
    """Run the blocks forward, then backward from (stego bands, r): the secret comes back, up to float rounding."""
    torch.manual_seed(0)
    model = build_model(get_config("tiny", arch="hinet", num_secrets=2))
    for p in model.parameters():  # away from the near-identity initialisation, so the test means something
        p.data.add_(0.05 * torch.randn_like(p))
    trunk = model.embedder.trunk
    assert trunk is model.revealer.trunk  # one set of weights, run both ways
    cover, secrets = _inputs(model.config, 32)
    with torch.no_grad():
        x1, x2 = trunk.dwt(cover - 0.5), trunk.dwt(secrets - 0.5)
        y1, y2 = x1, x2
        for block in trunk.blocks:
            y1, y2 = block(y1, y2)
        assert (y1 - x1).abs().max() > 1e-3  # the blocks do change the cover bands
        for block in reversed(trunk.blocks):
            y1, y2 = block.inverse(y1, y2)
    assert (y1 - x1).abs().max().item() < 1e-4
    assert (y2 - x2).abs().max().item() < 1e-4


# ------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("arch", ARCHS)
def test_embed_and_reveal_shapes(arch: str, preset: str, k: int, channels: int) -> None:
    cfg = get_config(preset, arch=arch, num_secrets=k, channels=channels)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    n = _size(cfg)
    cover, secrets = _inputs(cfg, n)
    with torch.inference_mode():
        stego = model.embed(cover, secrets)
        recovered = model.reveal(stego)
        raw, flip_logit = model.reveal_raw(stego)
        score = model.score_map(cover)
    assert stego.shape == (2, channels, n, n)
    assert recovered.shape == raw.shape == (2, k * channels, n, n)
    assert flip_logit is None  # mirror synchronisation by default, no learned flip head
    assert score.shape == (2, 1, n, n)
    for t in (stego, recovered):
        assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1
    # An untrained model starts near the identity on the cover (output layers initialised small). SRIS-Net's
    # thumbnail code also cancels the cover's own coefficients of the code, large on these white-noise covers: measure
    # that part on its own.
    code = model.thumbnail.writer(cover, secrets) if model.thumbnail is not None else 0
    assert (stego - cover - code).abs().mean() < 0.1


@pytest.mark.parametrize("arch", ARCHS)
def test_learned_flip_head_is_optional(arch: str) -> None:
    model = build_model(get_config("tiny", arch=arch))
    assert not any("flip" in name for name, _ in model.named_parameters())
    model = build_model(get_config("tiny", arch=arch, legacy={"flip_head": True}, mirror="none"))
    _, logit = model.reveal_raw(torch.rand(1, 3, 16, 16))
    assert logit is not None and logit.shape == (1,)


@pytest.mark.parametrize("arch", ARCHS)
def test_reveal_unmirrors_by_the_flip_decision(arch: str) -> None:
    """Learned flip head (first checkpoints): teacher-forced (training) and head-decided (inference) un-mirroring
    agree, for every architecture."""
    torch.manual_seed(0)
    model = build_model(get_config("tiny", arch=arch, legacy={"flip_head": True}, mirror="none")).eval()
    stego = torch.rand(2, 3, 32, 32)
    ones, zeros = torch.ones(2), torch.zeros(2)
    with torch.inference_mode():
        forced, _ = model.reveal_aligned(stego.flip(-1), ones)
        assert torch.equal(forced, model.reveal_aligned(stego, zeros)[0])
        model.flip_head.fc.bias.fill_(50.0)  # the head now says "mirrored" for every image
        decided, logit = model.reveal_raw(stego.flip(-1))
        assert (logit > 0).all()
        assert torch.equal(decided, forced)
        model.flip_head.fc.bias.fill_(-50.0)
        assert torch.equal(model.reveal_raw(stego)[0], model.reveal_aligned(stego, zeros)[0])


@pytest.mark.parametrize("arch", ["hinet", "unet"])
def test_baseline_paths_reject_a_size_they_cannot_take_and_the_model_pads_it(arch: str) -> None:
    model = build_model(get_config("small", arch=arch)).eval()
    cover, secret = torch.rand(1, 3, 30, 30), torch.rand(1, 3, 30, 30)
    with pytest.raises(ValueError, match="multiple of"):
        model.embed_raw(cover, secret)  # the training graph takes what the network takes
    with torch.inference_mode():
        assert model.reveal(model.embed(cover, secret)).shape == (1, 3, 30, 30)  # the public API pads and crops


def test_build_model_puts_the_learned_network_of_the_config_in_place() -> None:
    kinds = {"sris": (SRISEmbedder, SRISRevealer), "hinet": (HiNetEmbedder, HiNetRevealer)}
    kinds["unet"] = (UNetEmbedder, UNetRevealer)
    for arch, (embedder, revealer) in kinds.items():
        model = build_model(get_config("tiny", arch=arch))
        assert type(model) is HidingModel
        assert type(model.embedder) is embedder and type(model.revealer) is revealer
        assert (model.thumbnail is not None) == (arch == "sris")  # our codes ride with SRIS-Net only


# ------------------------------------------------------------------------------------------------ gradients
@pytest.fixture
def photo_dir(photo_factory, tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        Image.fromarray(photo_factory(72 + 8 * i, 96, seed=i)).save(d / f"p{i}.png")
    return d


@pytest.mark.parametrize(("arch", "light"), [*((a, False) for a in ARCHS), ("sris", True)])
def test_every_parameter_gets_a_gradient_from_the_training_losses(
    arch: str, light: bool, photo_dir: Path, tmp_path: Path
) -> None:
    """One real ``Trainer.train_step`` with every loss term on: after it, each generator parameter holds its gradient
    of the generator loss and each discriminator parameter (the light score head's too, distilled in the same step)
    its gradient of the discriminator loss."""
    overrides = {"arch": arch, "light_score": light}
    tc = TrainConfig(
        data=str(photo_dir), out=str(tmp_path / "run"), preset="tiny", model_overrides=overrides,
        crop=32, batch=2, val_fraction=0.0,
        # Every term from the first step: adversarial, 8-bit rounding, fidelity and score-map guidance at full weight.
        d_warmup=0, quantize_from=0, fidelity_from=-1, fidelity_ramp=1,
    )  # fmt: skip
    trainer = Trainer(tc)
    row = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values() if isinstance(v, float))
    assert row["l_adv"] > 0  # the adversarial term took part
    # Score-map guidance applies where the embedder uses the score map: SRIS-Net only, never the baselines.
    assert (row["l_guide"] > 0) if arch == "sris" else (row["l_guide"] == 0)
    model = trainer.model
    optimised = {id(p) for opt in (trainer.opt_g, trainer.opt_d) for g in opt.param_groups for p in g["params"]}
    problems = []
    for name, p in model.named_parameters():
        if name.endswith("context.attn.bias"):  # a softmax over all pixels ignores a constant: its gradient is 0
            continue
        if id(p) not in optimised:
            problems.append(f"{name}: in no optimiser")
        elif p.grad is None:
            problems.append(f"{name}: no gradient")
        elif not torch.isfinite(p.grad).all():
            problems.append(f"{name}: non-finite gradient")
        elif p.grad.abs().sum() == 0:
            problems.append(f"{name}: zero gradient")
    assert not problems, "\n".join(problems)
    d_ids = {id(p) for p in model.discriminator.parameters()}
    if light:
        d_ids |= {id(p) for p in model.light_score.parameters()}
    assert d_ids == {id(p) for g in trainer.opt_d.param_groups for p in g["params"]}
    assert not d_ids & {id(p) for g in trainer.opt_g.param_groups for p in g["params"]}


# ------------------------------------------------------------------------------------------------ score map
def test_score_map_changes_the_stego() -> None:
    torch.manual_seed(0)
    model = build_model(get_config("tiny")).eval()
    cover, secrets = _inputs(model.config, 32)
    with torch.inference_mode():
        flat = model.embed_raw(cover, secrets, torch.zeros_like(cover[:, :1]))
        busy = model.embed_raw(cover, secrets, torch.ones_like(cover[:, :1]))
        assert (flat - busy).abs().max() > 1e-5
        # A score of 0 damps the embedding (gain score_floor) against a score of 1 (gain 1).
        assert (flat - cover).abs().mean() < (busy - cover).abs().mean()
        # The public ``embed`` computes the score map itself: changing the discriminator's score head changes it.
        before = model.embed(cover, secrets)
        model.discriminator.score[-1].bias.add_(4.0)
        after = model.embed(cover, secrets)
    assert (before - after).abs().max() > 1e-5


def test_score_map_ablation_embeds_uniformly() -> None:
    model = build_model(get_config("tiny", score_map=False))
    cover = torch.rand(2, 3, 16, 16)
    assert torch.equal(model.score_map(cover), torch.ones(2, 1, 16, 16))


@pytest.mark.parametrize("arch", ["hinet", "unet"])
def test_baselines_ignore_the_score_map(arch: str) -> None:
    """The score map is SRIS-Net's part; baselines embed uniformly whatever score they are given."""
    torch.manual_seed(0)
    model = build_model(get_config("tiny", arch=arch)).eval()
    assert isinstance(model.embedder, (HiNetEmbedder, UNetEmbedder))
    cover, secrets = _inputs(model.config, 32)
    with torch.inference_mode():
        assert torch.equal(model.score_map(cover), torch.ones(2, 1, 32, 32))
        zero = model.embed_raw(cover, secrets, torch.zeros_like(cover[:, :1]))
        one = model.embed_raw(cover, secrets, torch.ones_like(cover[:, :1]))
        assert torch.equal(zero, one)
        assert torch.equal(model.embed(cover, secrets).clamp(0, 1), one.clamp(0, 1))
        # ... but they do embed: the secret changes the stego.
        other = model.embed_raw(cover, 1 - secrets)
        assert (other - one).abs().max() > 1e-6


# ------------------------------------------------------------------------------------------------ model-info
def test_model_info_prints_every_preset() -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["model-info", "--size", "32"])
    assert table.exit_code == 0, table.output
    for preset in PRESETS:
        count = sum(p.numel() for p in build_model(get_config(preset)).parameters())
        assert any(line.split()[:2] == [preset, f"{count:,}"] for line in table.output.splitlines()), table.output
    as_json = runner.invoke(main, ["model-info", "--size", "32", "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)["presets"]
    assert [r["preset"] for r in rows] == list(PRESETS)
    for r in rows:
        assert r["params"] == r["params_embed"] + r["params_reveal"] + r["params_discriminator"]
        assert r["gflops_embed"] > 0 and r["gflops_reveal"] > 0


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_gives_identical_outputs(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    cfg = get_config("tiny", arch=arch, num_secrets=2)
    model = build_model(cfg).eval()
    cover, secrets = _inputs(cfg, 32)
    path = save_checkpoint(model, tmp_path / "m.pt", meta={"step": 7})
    loaded = load_model(path)
    assert loaded.config == cfg and not loaded.training
    assert loaded.checkpoint_meta == {"step": 7}
    with torch.inference_mode():
        stego = model.embed(cover, secrets)
        assert torch.equal(loaded.embed(cover, secrets), stego)
        assert torch.equal(loaded.reveal(stego), model.reveal(stego))


def test_average_checkpoints_is_the_weighted_mean_and_refuses_other_architectures(tmp_path: Path) -> None:
    from pipeline.model.checkpoint import CheckpointError, average_checkpoints

    cfg = get_config("tiny")
    torch.manual_seed(3)
    a = save_checkpoint(build_model(cfg), tmp_path / "a.pt")
    torch.manual_seed(4)
    b = save_checkpoint(build_model(cfg), tmp_path / "b.pt")
    out = tmp_path / "mix.pt"
    mixed = average_checkpoints([a, b], [3.0, 1.0], out=out)
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    moved = 0
    for name, v in mixed.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * sa[name] + 0.25 * sb[name], atol=1e-6), name
            moved += int(not torch.equal(sa[name], sb[name]))
    assert moved > 0  # the two starts differ, so the mean is a new point
    stored = load_model(out)  # written in fp16, with its recipe
    assert stored.checkpoint_meta["averaged"] == [{"path": str(a), "weight": 3.0}, {"path": str(b), "weight": 1.0}]
    for name, v in stored.state_dict().items():
        assert torch.equal(v, mixed.state_dict()[name].half().float() if v.is_floating_point() else v), name
    other = save_checkpoint(build_model(get_config("tiny", num_secrets=2)), tmp_path / "k2.pt")
    with pytest.raises(CheckpointError, match="different configurations"):
        average_checkpoints([a, other])
    with pytest.raises(ValueError, match="one non-negative weight"):
        average_checkpoints([a, b], [1.0])


@pytest.mark.parametrize("arch", ARCHS)
def test_half_precision_checkpoint_loads(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model(get_config("tiny", arch=arch)).eval()
    full = save_checkpoint(model, tmp_path / "full.pt")
    half = save_checkpoint(model, tmp_path / "half.pt", half=True)
    assert half.stat().st_size < full.stat().st_size
    loaded = load_model(half)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert b.dtype == a.dtype, name  # loaded back as fp32
        assert torch.equal(b, a.half().float()), name
    cover, secrets = _inputs(model.config, 32)
    with torch.inference_mode():
        assert (loaded.embed(cover, secrets) - model.embed(cover, secrets)).abs().max() < 1e-2


def test_wider_revealer_from_config_extra_round_trips(tmp_path: Path) -> None:
    """``legacy.reveal`` widens the revealer only; a checkpoint carries it and loads to the same outputs."""
    wide = {"width": 12, "level_widths": [12, 24, 24], "dms_widths": [12, 24]}
    model = build_model(get_config("tiny", legacy={"reveal": wide})).eval()
    plain = build_model(get_config("tiny")).eval()
    assert model.revealer.stem.out_channels == 12 and plain.revealer.stem.out_channels == 6
    assert model.embedder.stem_cover.out_channels == plain.embedder.stem_cover.out_channels == 6
    loaded = load_model(save_checkpoint(model, tmp_path / "w.pt"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.reveal(x), model.reveal(x))


def test_fixture_checkpoint_loads(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint)
    assert isinstance(model.embedder, SRISEmbedder) and model.checkpoint_path == str(tiny_checkpoint)


def test_bad_checkpoints_raise_checkpoint_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}, "format": "someone-else/1"}, foreign)
    with pytest.raises(CheckpointError, match="not an sris-pipeline model checkpoint"):
        load_model(foreign)
    png = tmp_path / "image.png"
    Image.new("RGB", (8, 8)).save(png)
    with pytest.raises(CheckpointError):
        load_model(png)


# ------------------------------------------------------------------------------------------------ light score head
def test_distill_score_adds_a_fitted_head_and_changes_nothing_else(photo_factory, tmp_path: Path) -> None:
    """`distill-score` on a trained-like checkpoint: the head's map moves towards the discriminator's, every other
    weight is bit-identical, and the written checkpoint embeds with the head."""
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(10):  # names hash into both sides of the 80/20 split: some photos are held out
        Image.fromarray(photo_factory(96, 112, seed=i)).save(d / f"photo{i}.png")
    torch.manual_seed(0)
    src = build_model(get_config("tiny"))
    save_checkpoint(src, tmp_path / "in.pt")
    before = {k: v.clone() for k, v in src.state_dict().items()}
    out = tmp_path / "out.pt"
    args = ["distill-score", "--checkpoint", str(tmp_path / "in.pt"), "--data", str(d), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--steps", "60", "--batch", "4", "--no-half"])
    assert result.exit_code == 0, result.output
    fit = json.loads(result.output[result.output.rindex('{"train_l1"') :].splitlines()[0])
    model = load_model(out)
    assert model.config.network.light_score and model.light_score is not None
    after = model.state_dict()
    assert set(after) - set(before) == {k for k in after if k.startswith("light_score.")}
    assert all(torch.equal(before[k], after[k]) for k in before)
    g = torch.Generator().manual_seed(0)
    covers = torch.from_numpy(np.stack([photo_factory(64, 64, seed=20 + i) for i in range(4)])).permute(0, 3, 1, 2)
    covers = covers.float() / 255
    with torch.no_grad():
        teacher = model.discriminator.score_map(covers)
        untrained = build_model(get_config("tiny", light_score=True)).light_score.score_map(covers)
        light = model.light_score.score_map(covers)
        assert torch.equal(model.score_map(covers), light)
        assert (light - teacher).abs().mean() < (untrained - teacher).abs().mean()
        assert fit["val_l1"] < 0.5 and fit["train_l1"] < 0.5
        secrets = torch.rand(4, 3, 64, 64, generator=g)
        assert (model.embed(covers, secrets) - model.embed_raw(covers, secrets).clamp(0, 1)).abs().max() < 1e-5


# ------------------------------------------------------------------------------------------------ ablation switches
# Each switch of the ablation study (research/ablations.py) and the state-dict entries it may change: nothing else.
ABLATED_PARTS = {
    "lpfdd": r"(embedder|revealer)\.pyramid\.",
    "glem_global": r"(embedder|revealer)\.glems\.\d+\.(context|gate)\.",
    "sfm": r"(embedder|revealer)\.dms\.(fuse\.\d+|out_fuse)\.",
    "score_map": r"$^",
    "thumbnail_code": r"thumbnail\.(writer|reader)\.|revealer\.stem\.weight$",
}


@pytest.mark.parametrize("part", list(ABLATED_PARTS))
def test_ablation_switches_change_exactly_the_part_they_name(part: str) -> None:
    import re

    full = build_model(get_config("tiny"))
    ablated = build_model(get_config("tiny", **{part: False}))
    a = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in ablated.state_dict().items()}
    differ = (a.keys() ^ b.keys()) | {k for k in a.keys() & b.keys() if a[k] != b[k]}
    assert all(re.match(ABLATED_PARTS[part], k) for k in differ), sorted(differ)
    if part == "score_map":  # same weights; the map the embedder uses is constant
        cover = torch.rand(2, 3, 32, 32)
        assert torch.equal(ablated.score_map(cover), torch.ones(2, 1, 32, 32))
        assert not torch.equal(full.score_map(cover), torch.ones(2, 1, 32, 32))
    else:
        assert differ
    # Every module outside the part is the same class at the same place.
    kinds = lambda m: {n: type(x).__name__ for n, x in m.named_modules()}  # noqa: E731
    ka, kb = kinds(full), kinds(ablated)
    moved = [n for n in ka.keys() & kb.keys() if ka[n] != kb[n]]
    assert sorted(moved) == (["embedder.pyramid", "revealer.pyramid"] if part == "lpfdd" else []), moved


def test_no_lpfdd_is_a_learned_stack_of_the_same_flops() -> None:
    """ "Without LPFDD": learned 5x5 depthwise kernels at stride 2, no band-pass split, and the same FLOPs within 2%
    (LPFDD's band split costs one upsampling per level, the plain stack does not)."""
    from pipeline.model.info import describe

    for preset, size in (("tiny", 64), ("fast", 256)):
        full, ablated = describe(preset, size), describe(preset, size, lpfdd=False)
        for key in ("gflops_embed", "gflops_reveal"):
            assert abs(ablated[key] - full[key]) <= 0.02 * full[key], (preset, key)
    pyramid = build_model(get_config("tiny", lpfdd=False)).embedder.pyramid
    assert pyramid.kernels.requires_grad and pyramid.kernels.shape[0] == get_config("tiny").network.levels
    x = torch.rand(1, 4, 32, 32)
    assert [t.shape[-1] for t in pyramid.decompose(x)] == [32, 16, 8][: len(pyramid.decompose(x))]


# ------------------------------------------------------------------------------------------------ shipped models
def test_a_shipped_name_resolves_to_its_file_unless_a_file_of_that_name_is_here(tmp_path: Path, monkeypatch) -> None:
    from pipeline.model.checkpoint import SHIPPED, default_checkpoint_path, resolve_checkpoint, shipped_path

    assert resolve_checkpoint(None) == default_checkpoint_path() == shipped_path("k1")
    for name, filename in SHIPPED.items():
        assert resolve_checkpoint(name).name == filename and resolve_checkpoint(name).parent.name == "weights"
    assert resolve_checkpoint("runs/x/model.pt") == Path("runs/x/model.pt")
    monkeypatch.chdir(tmp_path)
    save_checkpoint(build_model(get_config("tiny")), tmp_path / "k2")
    assert resolve_checkpoint("k2") == Path("k2")
    assert load_model("k2").config == get_config("tiny")


@pytest.mark.parametrize("name", ["k1", "k2", "k4"])
def test_every_shipped_model_loads_by_name_and_hides_its_k(name: str) -> None:
    """The files the package ships (the model card lists them): each loads by name, hides the K its name says, and
    round-trips K secrets; `model-info` lists it with that K."""
    from pipeline.model.checkpoint import shipped_path

    model = load_model(name)
    k = int(name[1:])
    assert model.config.num_secrets == k and model.checkpoint_path == str(shipped_path(name))
    torch.manual_seed(0)
    cover, secrets = torch.rand(1, 3, 64, 64), torch.rand(1, 3 * k, 64, 64)
    with torch.inference_mode():
        assert model.reveal(model.embed(cover, secrets)).shape == (1, 3 * k, 64, 64)
    listed = json.loads(CliRunner().invoke(main, ["model-info", "--config", "tiny", "--json"]).output)["shipped"]
    row = next(r for r in listed if r["name"] == name)
    assert row["installed"] and row["num_secrets"] == k
