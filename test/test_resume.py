"""Exact resume: a run killed with SIGKILL at a random moment and resumed
with ``--resume`` ends bit-identical to an uninterrupted run; a corrupt ``latest.pt`` falls back
to the newest readable checkpoint; checkpoint writes never leave a partial file."""
from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import recipe_env, train_cmd

from osoup.train.checkpoint import save_atomic

pytestmark = pytest.mark.slow

# Deterministic CPU settings: one thread, no dropout, no SpecAugment (its masks would be
# reproducible too, but keep the comparison about the checkpoint state only).
ARGS = ["--dump-dir", "dump", "--token-dir", "data/token", "--asr-langs", "fr", "--st-langs", "fr",
        "--ssl", "cpc", "--recipe", "vs", "--max-frames", "4000", "--max-utts", "8", "--threads", "1",
        "--epochs", "3", "--steps-per-epoch", "4", "--save-every-steps", "2", "--scheduler", "plateau",
        "--warmup-steps", "3", "--log-interval", "1"]


def _train(recipe: Path, exp: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_cmd("--exp-dir", str(exp), *ARGS, *extra), cwd=recipe, env=recipe_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _assert_same_state(a: Path, b: Path) -> None:
    sa = torch.load(a, weights_only=False)
    sb = torch.load(b, weights_only=False)
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    for opt in ("opt_backbone", "opt_heads"):
        for i, st in sa[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[opt]["state"][i][k])), (opt, i, k)
    for wa, wb in zip(sa["soup"]["weightings"], sb["soup"]["weightings"]):
        assert torch.equal(wa["lambda"], wb["lambda"])
    assert sa["samplers"] == sb["samplers"] and sa["step_in_phase"] == sb["step_in_phase"]
    assert [h["dev"] for h in sa["history"]] == [h["dev"] for h in sb["history"]]


@pytest.fixture(scope="module")
def reference(mini_recipe, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    exp = tmp_path_factory.mktemp("ref") / "exp"
    _train(mini_recipe, exp)
    return exp


def test_kill_and_resume_is_bit_identical(mini_recipe, reference, tmp_path):
    _kill_and_resume(mini_recipe, reference, tmp_path)


@pytest.mark.timeout(400)
def test_kill_and_resume_with_workers_is_bit_identical(mini_recipe, reference, tmp_path):
    """The same with a loader worker two steps ahead: the checkpoint holds the samplers at the
    steps taken, not at what was prefetched, and the batches are those read in-process (the
    reference run has no worker)."""
    _kill_and_resume(mini_recipe, reference, tmp_path, "--num-workers", "1", "--prefetch", "2")


def _kill_and_resume(mini_recipe: Path, reference: Path, tmp_path: Path, *extra: str) -> None:
    """Kill a run at a random moment after its first checkpoint, resume it (with ``extra``
    options both times) and compare it with the uninterrupted ``reference``."""
    exp = tmp_path / "exp"
    proc = subprocess.Popen(train_cmd("--exp-dir", str(exp), *ARGS, *extra), cwd=mini_recipe, env=recipe_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (exp / "latest.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        # a random moment after the first checkpoint (the whole run lasts ~9 s after it)
        delay = random.uniform(0.0, 4.0)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (delay {delay:.2f} s)"
    before = torch.load(exp / "latest.pt", weights_only=False)  # never partial (atomic writes)
    assert before["step_in_phase"] < 12
    (exp / ".latest.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # what a kill mid-write leaves
    resumed = _train(mini_recipe, exp, "--resume", *extra)
    assert "resumed from" in resumed.stderr
    assert not list(exp.glob(".*.tmp"))
    _assert_same_state(reference / "latest.pt", exp / "latest.pt")
    best_a = torch.load(reference / "best.pt", weights_only=False)["model"]
    best_b = torch.load(exp / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_corrupt_latest_falls_back_to_an_epoch_checkpoint(mini_recipe, reference, tmp_path):
    """latest.pt truncated (a kill during a non-atomic copy, a full disk): --resume warns, takes
    checkpoint.2.pt, and the rerun epoch 3 ends where the uninterrupted run ended."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "checkpoint.2.pt").write_bytes((reference / "checkpoint.2.pt").read_bytes())
    data = (reference / "latest.pt").read_bytes()
    (exp / "latest.pt").write_bytes(data[: len(data) // 2])
    proc = _train(mini_recipe, exp, "--resume")
    assert "cannot resume from" in proc.stderr and "latest.pt" in proc.stderr
    assert "checkpoint.2.pt: epoch 2" in proc.stderr
    _assert_same_state(reference / "latest.pt", exp / "latest.pt")


def test_save_atomic_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_atomic({"step": 1}, path)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temp file left behind
