"""The options of osoup-train (osoup/train/options.py, check_options.py), phase planning,
per-head clipping and the single-utterance data error: all without training data."""
from __future__ import annotations

from types import SimpleNamespace

import kaldiio
import numpy as np
import pytest
import torch

from osoup.bin import train as train_bin
from osoup.data.objectives import ObjectiveSpec
from osoup.fileio import DataError
from osoup.train.data import load_train_data
from osoup.train.options import OPTIONS, TrainConfig
from osoup.train.phases import plan_phases
from osoup.train.step import clip_gradients

# TrainConfig as it was before the option table: every name and default must survive.
OLD_DEFAULTS = dict(
    levels="asr>st>ssl", epochs=200, pretrain_epochs=100, finetune_epochs=0, steps_per_epoch=0, max_frames=12000,
    max_utts=64, upsample={}, lr_backbone=5e-4, lr_heads=5e-5, weight_decay=0.01, warmup_steps=0,
    scheduler="plateau", pretrain_scheduler="step", step_size=20, plateau_patience=10, grad_clip=5.0, accum_grad=1,
    gamma=0.01, rho=0.0, gram_normalize="none", gram_params="shared", weighting="modo", weighting_opts={},
    moo_layers=0, conflict_interval=50, probe_coords=0, penalty_init=[], penalty_rate=[], penalty_cap=[],
    penalty_scale_epochs=200, static_weights={"en": 0.18, "fr": 0.19, "de": 0.27, "es": 0.16, "ca": 0.20},
    peft_sets="asr>st", seed=1, keep_last=5, average_last=0, log_interval=10, max_skips=10, save_every_steps=0,
    amp="none", simulate_ranks=0, trace=False, cache_feats=True, device="auto", threads=0,
)


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = train_bin.main(list(argv))
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR: ")]


def test_train_config_keeps_every_old_option_and_default():
    cfg = TrainConfig()
    assert cfg.method == "vm"
    for name, default in OLD_DEFAULTS.items():
        assert getattr(cfg, name) == default, name
    assert TrainConfig().upsample is not cfg.upsample  # mutable defaults are not shared


def test_help_lists_every_option_with_its_help(capsys):
    with pytest.raises(SystemExit) as e:
        train_bin.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for o in OPTIONS:
        assert o.flag in out and " ".join(o.help.split())[:30] in out, o.name
    assert "--recipe" in out and "--method" in out


def test_recipe_is_an_alias_of_method(tmp_path):
    langs = ["--asr-langs", "fr", "--st-langs", "fr"]
    args, _ = train_bin.parse_args(["--exp-dir", str(tmp_path / "e"), "--recipe", "vs", *langs])
    assert args.method == "vs" and not hasattr(args, "recipe")
    conf = tmp_path / "c.yaml"
    conf.write_text("recipe: joint\nepochs: 3\nlr-heads: 1.0e-3\nspecaug: false\n", encoding="utf-8")
    args, _ = train_bin.parse_args(["--exp-dir", str(tmp_path / "e"), "--config", str(conf), *langs])
    assert (args.method, args.epochs, args.lr_heads, args.specaug) == ("joint", 3, 1e-3, False)


@pytest.mark.parametrize("option,value,allowed", [
    ("--epochs", "0", ">= 1"), ("--steps-per-epoch", "-1", ">= 0"), ("--lr-backbone", "0", "> 0"),
    ("--lr-heads", "-0.001", "> 0"), ("--gamma", "0", "> 0"), ("--rho", "-0.1", ">= 0"),
    ("--grad-clip", "-1", ">= 0"), ("--accum-grad", "0", ">= 1"), ("--epochs", "2.5", "an integer"),
    ("--amp", "fp8", "one of none, bf16, fp16"), ("--upsample", "fr:-2", "> 0"),
    ("--moo-layers", "6", "from 1 to 5"), ("--moo-layers", "2.5", "whole number"),
])
def test_a_bad_value_is_one_error_before_anything_is_written(capsys, tmp_path, option, value, allowed):
    exp = tmp_path / "exp"
    rc, errors = _run(capsys, "--exp-dir", str(exp), "--method", "vs", option, value)
    assert rc == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"ERROR: {option} {value} (command line): ") and allowed in errors[0]
    assert not exp.exists()  # nothing half-written


def test_init_new_heads_without_init_from_and_heads_is_an_error(capsys, tmp_path):
    src = tmp_path / "src.pt"
    src.write_bytes(b"")
    for extra in ([], ["--init-from", str(src)]):
        rc, errors = _run(capsys, "--exp-dir", str(tmp_path / "exp"), "--asr-langs", "fr", "--st-langs", "fr",
                          "--init-new-heads", "st", *extra)
        assert rc == 1 and errors == ["ERROR: --init-new-heads st (command line): needs --init-from FILE and "
                                      "--init-heads true (it names heads NOT to load)"], errors
    assert not (tmp_path / "exp").exists()


def test_config_file_errors_name_the_file(capsys, tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("epochs: 3\nlr-backbone: -1\n", encoding="utf-8")
    rc, errors = _run(capsys, "--exp-dir", str(tmp_path / "exp"), "--config", str(conf))
    assert rc == 1 and errors == [f"ERROR: --lr-backbone -1 (config file {conf}): must be a number > 0"]
    conf.write_text("epochs: 3\nlr-bakbone: 1.0e-3\n", encoding="utf-8")
    rc, errors = _run(capsys, "--exp-dir", str(tmp_path / "exp"), "--config", str(conf))
    assert rc == 1 and len(errors) == 1 and str(conf) in errors[0] and "'lr-bakbone'" in errors[0]
    assert not (tmp_path / "exp").exists()


def test_levels_typo_names_the_token_before_data_is_read(capsys, tmp_path):
    # the dump dir does not exist: reading data would fail with another message
    rc, errors = _run(capsys, "--exp-dir", str(tmp_path / "exp"), "--dump-dir", str(tmp_path / "none"),
                      "--asr-langs", "fr", "--st-langs", "fr", "--method", "vm", "--levels", "asr>st>sll")
    assert rc == 1 and len(errors) == 1 and "--levels asr>st>sll (command line)" in errors[0]
    assert "unknown token 'sll'" in errors[0]


def test_an_option_the_method_does_not_use(capsys, tmp_path):
    rc, errors = _run(capsys, "--exp-dir", str(tmp_path / "exp"), "--method", "joint", "--levels", "asr>ssl")
    assert rc == 1 and errors == ["ERROR: --levels (command line) is not used by method joint (only by vm); "
                                  "remove it"]
    conf = tmp_path / "shared.yaml"  # a config shared by several methods: a warning, not an error
    conf.write_text("gamma: 0.05\npretrain-epochs: 4\n", encoding="utf-8")
    _, warnings = train_bin.parse_args(["--exp-dir", str(tmp_path / "exp"), "--config", str(conf),
                                        "--method", "vs", "--asr-langs", "fr"])
    assert warnings == [f"--pretrain-epochs (config file {conf}) is not used by method vs "
                        "(only by two_stage, two_stage_static, peft); ignored"]


def _cfg(method: str, **kw) -> SimpleNamespace:
    return SimpleNamespace(**{**OLD_DEFAULTS, "method": method, "pretrain_epochs": 2, "epochs": 4, **kw})


def test_phases_are_named_for_what_they_do():
    names = ["asr_en", "asr_fr", "st_fr", "ssl"]
    assert [(p.name, p.method) for p in plan_phases(_cfg("vm"), names)] == [("vm", "vm")]
    two = plan_phases(_cfg("two_stage", lr_heads=1e-4), names)
    assert [(p.name, p.method, p.objectives) for p in two] == [
        ("pretrain-ssl", "ssl", ["ssl"]), ("finetune-mean", "mean", ["asr_en", "asr_fr", "st_fr"])]
    assert two[1].lr_backbone == 1e-4 and two[1].epochs == 4  # β for the backbone (eq. 32)
    assert plan_phases(_cfg("two_stage_static"), names)[1].name == "finetune-static"
    peft = plan_phases(_cfg("peft", peft_sets="st>asr_en,asr_fr"), names)
    assert [(p.name, p.objectives, p.train_backbone, p.epochs) for p in peft] == [
        ("pretrain-ssl", ["ssl"], True, 2), ("heads-st", ["st_fr"], False, 2),
        ("heads-asr_en+asr_fr", ["asr_en", "asr_fr"], False, 2)]
    with pytest.raises(DataError, match="pre-trains on SSL"):
        plan_phases(_cfg("peft"), ["asr_fr", "st_fr"])


def test_each_head_is_clipped_on_its_own():
    """eq. 14: a head's gradient does not depend on another head's; one norm over every head
    would shrink the small one too."""
    theta = torch.nn.Parameter(torch.zeros(3))
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2))
    theta.grad = torch.full((3,), 10.0)
    a.grad = torch.full((4,), 50.0)  # norm 100
    b.grad = torch.tensor([0.6, 0.8])  # norm 1, below the limit
    clip_gradients([theta], {"asr_fr": [a], "st_fr": [b]}, max_norm=5.0)
    assert torch.allclose(a.grad.norm(), torch.tensor(5.0))
    assert torch.equal(b.grad, torch.tensor([0.6, 0.8]))
    assert torch.allclose(theta.grad.norm(), torch.tensor(5.0))
    clip_gradients([theta], {"asr_fr": [a]}, max_norm=0.0)  # 0: no clipping
    assert torch.allclose(a.grad.norm(), torch.tensor(5.0))


def test_single_utterance_objective_is_named(tmp_path):
    d = tmp_path / "train_fr"
    d.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        w("u1", np.zeros((50, 80), dtype=np.float32))
    (d / "utt2num_frames").write_text("u1 50\n", encoding="utf-8")
    spec = ObjectiveSpec("ssl", "ssl", None, [d], [], None, None)
    with pytest.raises(DataError, match=r"objective ssl: its training data .* has 1 utterance; .* at least 2"):
        load_train_data([spec], SimpleNamespace(**OLD_DEFAULTS))


def test_loss_scaler_halves_on_overflow_and_grows_after_2000_good_steps():
    from osoup.train.amp import LossScaler

    s = LossScaler(True)
    assert s.scale == 2.0**16
    s.update(overflow=True)
    assert s.scale == 2.0**15 and s.good_steps == 0
    for _ in range(1999):
        s.update(overflow=False)
    assert s.scale == 2.0**15
    s.update(overflow=False)
    assert s.scale == 2.0**16 and s.good_steps == 0
    restored = LossScaler(True)
    restored.load_state_dict({"loss_scale": 512.0})  # a checkpoint from before the good-step count
    assert (restored.scale, restored.good_steps) == (512.0, 0)
    off = LossScaler(False)
    off.update(overflow=True)
    assert off.scale == 1.0 and off.state_dict()["loss_scale"] == 1.0


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


# hf_wav2vec2 configs need a checkpoint dir: test/test_backbones.py and test_raw_feats.py run them
@pytest.mark.parametrize("conf", sorted(str(p.relative_to(REPO)) for p in REPO.glob("egs/*/conf/train*.yaml")
                                        if "hf_wav2vec2" not in p.read_text(encoding="utf-8")))
def test_every_shipped_conformer_train_config_parses_for_every_method(conf):
    for method in ("joint", "vs", "vc", "vm"):
        args, _ = train_bin.parse_args(["--exp-dir", "unused", "--config", str(REPO / conf), "--method", method,
                                        "--asr-langs", "en fr", "--st-langs", "fr"])
        assert args.method == method


def test_gpu_configs_select_layers_with_the_sketched_probe():
    # issue 13: the 58m/100m CoVoST configs bound the per-objective buffers (the mini check is in the README)
    for conf in ("train.yaml", "train_100m.yaml"):
        args, _ = train_bin.parse_args(["--exp-dir", "unused", "--config", str(REPO / "egs/covost2/conf" / conf),
                                        "--method", "vm", "--asr-langs", "en fr", "--st-langs", "fr"])
        assert (args.moo_layers, args.probe_coords, args.conflict_interval) == (0.4, 65536, 50), conf
