"""The phased baselines end to end on the tiny mini recipe (paper appendix D): two_stage,
two_stage_static and peft run their phases in order on the right objectives, fine-tuning
moves the backbone at the heads' rate β, a heads-only phase leaves θ exactly as it was while
its heads learn, and each run writes its checkpoints and best.pt."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from osoup.bin import train as train_bin
from osoup.fileio import DataError

pytestmark = pytest.mark.slow

ALPHA, BETA = "1e-3", "3e-4"
BASE = ["--dump-dir", "dump", "--token-dir", "data/token", "--asr-langs", "fr", "--st-langs", "fr", "--ssl", "cpc",
        "--max-frames", "4000", "--max-utts", "8", "--threads", "1", "--dropout", "0", "--specaug", "false",
        "--scheduler", "none", "--pretrain-scheduler", "none", "--steps-per-epoch", "2", "--log-interval", "1",
        "--lr-backbone", ALPHA, "--lr-heads", BETA, "--verbose", "0"]


def _train(recipe: Path, exp: Path, monkeypatch, caplog, *extra: str) -> tuple[dict, dict]:
    """Train in-process; returns the summary and the model's initial state."""
    monkeypatch.chdir(recipe)  # feature paths in the scp files are relative to the recipe dir
    args, _ = train_bin.parse_args(["--exp-dir", str(exp), *BASE, *extra])
    tr = train_bin.build_trainer(args)
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with caplog.at_level("INFO", logger="osoup.train.trainer"):
        summary = tr.run()
    return summary, init


def _model(exp: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(exp / name, weights_only=False)["model"]


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


def _lr(exp: Path, name: str, which: str) -> float:
    return torch.load(exp / name, weights_only=False)[which]["param_groups"][0]["lr"]


@pytest.mark.parametrize("method,finetune", [("two_stage", "finetune-mean"), ("two_stage_static", "finetune-static")])
def test_two_stage_pretrains_then_finetunes_at_beta(mini_recipe, tmp_path, monkeypatch, caplog, method, finetune):
    exp = tmp_path / "exp"
    summary, init = _train(mini_recipe, exp, monkeypatch, caplog, "--method", method, "--pretrain-epochs", "1",
                           "--finetune-epochs", "1")
    assert summary["phases"] == ["pretrain-ssl", finetune]
    assert [(h["phase"], sorted(h["dev"])) for h in summary["history"]] == [
        ("pretrain-ssl", ["ssl"]), (finetune, ["asr_fr", "st_fr"])]
    assert f"phase {finetune}: method {finetune.split('-')[1]}, objectives asr_fr,st_fr" in caplog.text
    pre, ft = _model(exp, "checkpoint.1.pt"), _model(exp, "checkpoint.2.pt")
    assert not _same(init, pre, "encoder.") and _same(init, pre, "heads.")  # pre-training: θ and SSL only
    assert not _same(pre, ft, "encoder.") and not _same(pre, ft, "heads.asr_fr") and _same(pre, ft, "ssl.")
    assert _lr(exp, "checkpoint.1.pt", "opt_backbone") == float(ALPHA)
    assert _lr(exp, "checkpoint.2.pt", "opt_backbone") == float(BETA)  # eq. 32: backbone at β
    best = torch.load(exp / "best.pt", weights_only=False)
    assert best["epoch"] == 2  # only the fine-tuning phase picks the model
    assert (exp / "latest.pt").is_file() and (exp / "train_summary.json").is_file()


def test_peft_trains_one_head_set_at_a_time_on_a_frozen_backbone(mini_recipe, tmp_path, monkeypatch, caplog):
    exp = tmp_path / "exp"
    summary, init = _train(mini_recipe, exp, monkeypatch, caplog, "--method", "peft", "--pretrain-epochs", "1",
                           "--finetune-epochs", "2", "--peft-sets", "asr>st")
    assert summary["phases"] == ["pretrain-ssl", "heads-asr", "heads-st"]
    assert [(h["phase"], sorted(h["dev"])) for h in summary["history"]] == [
        ("pretrain-ssl", ["ssl"]), ("heads-asr", ["asr_fr"]), ("heads-st", ["st_fr"])]
    assert "phase heads-asr: method mean, objectives asr_fr, 1 epochs × 2 steps, lr backbone frozen" in caplog.text
    pre, asr, st = (_model(exp, f"checkpoint.{n}.pt") for n in (1, 2, 3))
    assert not _same(init, pre, "encoder.")
    # θ (parameters and BatchNorm statistics) exactly as pre-training left it
    assert _same(pre, asr, "encoder.") and _same(asr, st, "encoder.")
    assert not _same(pre, asr, "heads.asr_fr") and _same(pre, asr, "heads.st_fr")
    assert _same(asr, st, "heads.asr_fr") and not _same(asr, st, "heads.st_fr")
    latest = torch.load(exp / "latest.pt", weights_only=False)
    assert latest["opt_backbone"] is None and latest["opt_heads"]["param_groups"][0]["lr"] == float(BETA)
    assert torch.load(exp / "best.pt", weights_only=False)["epoch"] == 3
    # resume from the end of heads-asr (latest.pt and the last epoch lost): the rerun heads-st
    # phase ends exactly where the uninterrupted run ended
    (exp / "latest.pt").unlink()
    (exp / "checkpoint.3.pt").rename(tmp_path / "reference.pt")
    args, _ = train_bin.parse_args(["--exp-dir", str(exp), *BASE, "--method", "peft", "--pretrain-epochs", "1",
                                    "--finetune-epochs", "2", "--peft-sets", "asr>st", "--resume"])
    with caplog.at_level("INFO", logger="osoup.train.trainer"):
        resumed = train_bin.build_trainer(args).run(resume=True)
    assert "checkpoint.2.pt: epoch 2 (phase 1" in caplog.text
    assert resumed["history"] == summary["history"]
    ref, again = torch.load(tmp_path / "reference.pt", weights_only=False), _model(exp, "checkpoint.3.pt")
    assert all(torch.equal(ref["model"][k], again[k]) for k in again)


def test_dev_every_evaluates_fewer_epochs_and_trains_the_same_model(mini_recipe, tmp_path, monkeypatch, caplog):
    """--dev-every 2: dev losses after every 2nd epoch of a phase and after its last (history,
    best.pt among those only); skipping evaluations leaves the trained model bit for bit as
    with --dev-every 1; the plateau schedule, which reads every epoch's score, refuses it."""
    opts = ("--method", "two_stage", "--pretrain-epochs", "1", "--finetune-epochs", "3")
    every, _ = _train(mini_recipe, tmp_path / "every", monkeypatch, caplog, *opts)
    sparse, _ = _train(mini_recipe, tmp_path / "sparse", monkeypatch, caplog, *opts, "--dev-every", "2")
    assert [h["epoch"] for h in every["history"]] == [1, 2, 3, 4]
    assert [(h["epoch"], h["phase"]) for h in sparse["history"]] == [
        (1, "pretrain-ssl"), (3, "finetune-mean"), (4, "finetune-mean")]  # phase epochs 1 | 2, 3 of 3
    assert "epoch 2 (finetune-mean) done; no dev evaluation after it (--dev-every 2)" in caplog.text
    assert [h["dev"] for h in sparse["history"]] == [h["dev"] for h in every["history"] if h["epoch"] != 2]
    assert torch.load(tmp_path / "sparse" / "best.pt", weights_only=False)["epoch"] in (3, 4)
    a, b = _model(tmp_path / "every", "latest.pt"), _model(tmp_path / "sparse", "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    only_last, _ = _train(mini_recipe, tmp_path / "last", monkeypatch, caplog, *opts, "--dev-every", "0")
    assert [h["epoch"] for h in only_last["history"]] == [1, 4]

    monkeypatch.chdir(mini_recipe)
    with pytest.raises(DataError, match=r"--dev-every 2 \(command line\): --scheduler plateau \(command line\) "
                                        r"reads the dev score after every epoch"):
        train_bin.parse_args(["--exp-dir", str(tmp_path / "p"), *BASE, *opts, "--scheduler", "plateau",
                              "--dev-every", "2"])
