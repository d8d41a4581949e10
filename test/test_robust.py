"""Surviving bad steps, bad data and interrupted stages (docs/design.md).

- A non-finite loss or gradient skips the step: no parameter, buffer, optimizer or λ change;
  skips are counted, and ``--max-skips`` in a row stop training with a message naming the
  objective.
- A corrupt feature archive or an out-of-range token id makes osoup-train print
  ``ERROR: ...`` naming the utterance and exit 1, without a traceback.
- Stage 3 killed midway and rerun gives the same features, without redoing finished jobs.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from conftest import copy_prepared, copy_recipe, recipe_env, train_cmd

from osoup.bin import train as train_bin
from osoup.data.datadir import read_scp
from osoup.train import loss as train_loss
from osoup.train.trainer import Trainer, TrainingStopped

pytestmark = pytest.mark.slow

BASE = ["--dump-dir", "dump", "--token-dir", "data/token", "--asr-langs", "fr", "--st-langs", "fr",
        "--ssl", "cpc", "--recipe", "vs", "--max-frames", "4000", "--max-utts", "8", "--threads", "1",
        "--dropout", "0", "--specaug", "false", "--scheduler", "none", "--log-interval", "1", "--verbose", "0"]


def _trainer(recipe: Path, exp: Path, monkeypatch, *extra: str) -> Trainer:
    monkeypatch.chdir(recipe)  # feature paths in the scp files are relative to the recipe dir
    args = train_bin.get_parser().parse_args(["--exp-dir", str(exp), *BASE, *extra])
    exp.mkdir(parents=True, exist_ok=True)
    return train_bin.build_trainer(args)


def _poison(monkeypatch, tr: Trainer, bad_steps: set[int], objective: str, kind: str) -> None:
    """Make ``objective``'s loss NaN ("loss") or its head gradient NaN with a finite loss
    ("grad") on the steps (step_in_phase) in ``bad_steps``, through the one function that
    computes a training half's loss."""
    real = train_loss.half_loss

    def half_loss(model, name, fset, idx, device, distributed=False):
        loss, frames = real(model, name, fset, idx, device, distributed)
        if name == objective and tr.state.step_in_phase in bad_steps:
            if kind == "loss":
                loss = loss * float("nan")
            else:  # 0 * sqrt(0 * x): value 0, gradient 0 * inf = nan
                p = model.objective_head_parameters(name)[0]
                loss = loss + 0.0 * torch.sqrt(0.0 * p.sum())
        return loss, frames

    monkeypatch.setattr(train_loss, "half_loss", half_loss)


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_nonfinite_steps_change_nothing(mini_recipe, tmp_path, monkeypatch, caplog, kind):
    """Every step of the only epoch is poisoned: the model (parameters and BatchNorm buffers),
    the optimizers and λ stay exactly as initialised, and every step is counted."""
    tr = _trainer(mini_recipe, tmp_path / "exp", monkeypatch, "--epochs", "1", "--steps-per-epoch", "3",
                  "--max-skips", "100")
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    _poison(monkeypatch, tr, {0, 1, 2}, "st_fr", kind)
    with caplog.at_level("WARNING", logger="osoup.train.trainer"):
        summary = tr.run()
    assert summary["skipped_steps"] == 3
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, init[k]), k
    ck = torch.load(tmp_path / "exp" / "latest.pt", weights_only=False)
    assert ck["opt_backbone"]["state"] == {} and ck["opt_heads"]["state"] == {}
    lam = ck["soup"]["weightings"][0]["lambda"]
    assert torch.equal(lam, torch.full_like(lam, 1.0 / lam.numel()))
    assert ck["soup"]["step_count"] == 0 and ck["skips_total"] == 3
    log = caplog.text
    assert f"non-finite {'loss' if kind == 'loss' else 'gradient'} of st_fr at step 2: step skipped" in log


def test_one_bad_step_is_skipped_and_training_goes_on(mini_recipe, tmp_path, monkeypatch):
    tr = _trainer(mini_recipe, tmp_path / "exp", monkeypatch, "--epochs", "1", "--steps-per-epoch", "3")
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    _poison(monkeypatch, tr, {1}, "asr_fr", "loss")
    summary = tr.run()
    assert summary["skipped_steps"] == 1
    ck = torch.load(tmp_path / "exp" / "latest.pt", weights_only=False)
    assert ck["soup"]["step_count"] == 2  # λ moved on the two good steps only
    assert int(ck["opt_backbone"]["state"][0]["step"]) == 2
    changed = [k for k, v in tr.model.state_dict().items() if not torch.equal(v, init[k])]
    assert len(changed) > len(init) // 2  # the good steps trained


def test_max_skips_stops_naming_the_objective(mini_recipe, tmp_path, monkeypatch, capsys):
    tr = _trainer(mini_recipe, tmp_path / "exp", monkeypatch, "--epochs", "2", "--steps-per-epoch", "3",
                  "--max-skips", "2")
    _poison(monkeypatch, tr, {1, 2}, "asr_fr", "loss")
    with pytest.raises(TrainingStopped, match=r"2 consecutive steps skipped \(non-finite loss of asr_fr at step 2"):
        tr.run()
    # through the command: ERROR line, exit status 1, no traceback
    monkeypatch.chdir(mini_recipe)
    rc = train_bin.main(["--exp-dir", str(tmp_path / "exp2"), *BASE, "--epochs", "1", "--steps-per-epoch", "3",
                         "--max-skips", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "ERROR: 2 consecutive steps skipped (non-finite loss of asr_fr" in err


def _run_train(cwd: Path, exp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd("--exp-dir", str(exp), *BASE, "--epochs", "1", "--steps-per-epoch", "2", *extra),
                          cwd=cwd, env=recipe_env(), capture_output=True, text=True, timeout=300)


def test_corrupt_feature_archive_names_the_utterance(mini_recipe, tmp_path):
    r = copy_prepared(mini_recipe, tmp_path / "r")
    feats = read_scp(r / "dump" / "asr" / "train_fr" / "feats.scp")
    utt, where = sorted(feats.items())[3]
    ark, offset = where.rsplit(":", 1)
    with open(r / ark, "r+b") as f:  # the binary matrix header "\0BFM " becomes garbage
        f.seek(int(offset))
        f.write(b"garbage!")
    proc = _run_train(r, tmp_path / "exp")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(err) == 1 and repr(utt) in err[0] and "features of utterance" in err[0], proc.stderr[-3000:]


def test_out_of_range_token_id_names_the_utterance(mini_recipe, tmp_path, monkeypatch, capsys):
    from osoup.text.tokenizer import Tokenizer

    text = read_scp(mini_recipe / "dump" / "asr" / "train_fr" / "text")
    utt = sorted(text)[5]
    real = Tokenizer.encode

    def encode(self, s):
        ids = real(self, s)
        return ids + [self.vocab_size] if s == text[utt] and self.kind == "asr" else ids

    monkeypatch.setattr(Tokenizer, "encode", encode)
    monkeypatch.chdir(mini_recipe)
    rc = train_bin.main(["--exp-dir", str(tmp_path / "exp"), *BASE, "--epochs", "1", "--steps-per-epoch", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("ERROR: ") and repr(utt) in err and "token id outside" in err, err


def test_stage3_killed_and_rerun(mini_recipe, tmp_path):
    """SIGKILL stage 3 (the whole process group) after some fbank jobs finished; the rerun
    completes with the same features and does not redo the finished jobs."""
    recipe = copy_recipe(tmp_path)
    shutil.copytree(mini_recipe / "data", recipe / "data", symlinks=True)  # wav.scp paths are absolute
    args = ["bash", "run.sh", "--tiny", "true", "--stage", "3", "--stop-stage", "3", "--nj", "3"]
    proc = subprocess.Popen(args, cwd=recipe, env=recipe_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    raw = recipe / "dump" / "raw"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list(raw.glob("*/data/.done.*"))) >= 4:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "stage 3 finished before it could be killed"
    finished = sorted(raw.glob("*/data/.done.*"))
    mtimes = {p: (p.parent / f"feats.{p.name.split('.')[-1]}.ark").stat().st_mtime_ns for p in finished}
    complete_sets = {p.parent.name for p in raw.glob("*/.done")}
    assert mtimes and len(complete_sets) < len(list((recipe / "data").glob("*_*")))

    rerun = subprocess.run(args, cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    for s in complete_sets:
        assert f"Stage 3: dump/raw/{s} already done" in rerun.stderr
    for p, t in mtimes.items():  # finished jobs were not redone
        assert (p.parent / f"feats.{p.name.split('.')[-1]}.ark").stat().st_mtime_ns == t, p
    assert not list(raw.glob("*/data/.feats.*.tmp"))
    # the same features as the uninterrupted run of the session fixture (which used --nj 2)
    ref_root = mini_recipe / "dump" / "raw"
    sets = sorted(p.name for p in ref_root.iterdir() if p.is_dir())
    assert sets == sorted(p.name for p in raw.iterdir() if p.is_dir())
    for s in sets:
        for f in ("utt2num_frames", "wav.scp", "text", "utt2spk"):
            assert (raw / s / f).read_text(encoding="utf-8") == (ref_root / s / f).read_text(encoding="utf-8"), (s, f)
        got, ref = read_scp(raw / s / "feats.scp"), read_scp(ref_root / s / "feats.scp")
        assert set(got) == set(ref)
        for utt in got:
            a = kaldiio.load_mat(str(recipe / got[utt]))
            b = kaldiio.load_mat(str(mini_recipe / ref[utt]))
            assert np.array_equal(a, b), (s, utt)
