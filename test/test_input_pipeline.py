"""The background input pipeline (``osoup/train/prefetch.py``): loader workers assemble exactly
the batches the training process would, the samplers a checkpoint saves are at what the steps
consumed (not at what was prefetched), a worker's data error is one clear error, the wait for
input is logged, and bad ``--num-workers`` / ``--prefetch`` values are refused. Resume with
workers: test/test_resume.py::test_kill_and_resume_with_workers_is_bit_identical."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from osoup.bin import train as train_bin
from osoup.data.dataset import FeatureSet, ObjectiveSampler, make_batches
from osoup.fileio import DataError
from osoup.nets.model import pad_batch, pad_targets
from osoup.train.data import TrainData, lookahead
from osoup.train.prefetch import StepSource, resolve_num_workers
from osoup.train.progress import EpochProgress

BASE = ["--dump-dir", "dump", "--token-dir", "data/token", "--asr-langs", "fr", "--st-langs", "fr",
        "--ssl", "cpc", "--recipe", "vs", "--max-frames", "4000", "--max-utts", "8", "--threads", "1",
        "--dropout", "0", "--specaug", "false", "--scheduler", "none", "--verbose", "0"]
OBJECTIVES = ["asr_fr", "st_fr", "ssl"]


def _trainer(recipe: Path, exp: Path, monkeypatch, *extra: str):
    monkeypatch.chdir(recipe)  # feature paths in the scp files are relative to the recipe dir
    args = train_bin.get_parser().parse_args(["--exp-dir", str(exp), *BASE, *extra])
    return train_bin.build_trainer(args)


def _states(data: TrainData) -> list[dict]:
    return [s.state_dict() for s in data.samplers.values()] + [
        s.state_dict() for ss in data.sim_samplers.values() for s in ss]


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.dtype == b.dtype and torch.equal(a, b))


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("extra,workers,prefetch", [([], 2, 3), (["--accum-grad", "2", "--simulate-ranks", "2"], 1, 2)])
def test_worker_batches_equal_in_process_batches(mini_recipe, tmp_path, monkeypatch, extra, workers, prefetch):
    """Same sampler positions, one source in-process and one with workers: every step's plan,
    features, lengths, targets and frame counts are equal (and equal to padding the features
    read directly); across a reshuffle; and the samplers end at the consumed steps."""
    tr = _trainer(mini_recipe, tmp_path / "exp", monkeypatch, *extra)
    data_a, data_b = lookahead(tr.data), lookahead(tr.data)  # two independent copies of the samplers
    steps = 2 * max(tr.data.batch_counts.values()) + 1  # every sampler starts a new cycle
    accum = tr.cfg.accum_grad
    with StepSource(data_a, OBJECTIVES, accum) as a, StepSource(data_b, OBJECTIVES, accum, workers, prefetch) as b:
        for _ in range(steps):
            (ba, _), (bb, _) = a.next(), b.next()
            assert ba.plan == bb.plan and len(ba.halves) == len(OBJECTIVES) * accum * 2
            for (name, idx), ha, hb in zip(ba.plan, ba.halves, bb.halves):
                assert ha.idx == hb.idx == idx and ha.frames == hb.frames
                for x, y in [(ha.feats, hb.feats), (ha.lengths, hb.lengths), (ha.targets, hb.targets),
                             (ha.target_lengths, hb.target_lengths)]:
                    assert _same(x, y), name
                fset = tr.data.train_sets[name]
                feats, lengths = pad_batch([fset.load(fset.examples[i].utt_id) for i in idx])
                assert torch.equal(feats, ha.feats) and torch.equal(lengths, ha.lengths)
                assert (ha.targets is None) == (name == "ssl")
                if ha.targets is not None:
                    targets, tlens = pad_targets([fset.examples[i].target for i in idx])
                    assert torch.equal(targets, ha.targets) and torch.equal(tlens, ha.target_lengths)
            # the workers have drawn ahead, but the samplers a checkpoint saves are at the consumed step
            assert _states(data_b) == _states(data_a)
    assert _states(data_a) != _states(tr.data)  # (they did move)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_data_error_is_one_clear_error(mini_recipe, tmp_path, monkeypatch):
    tr = _trainer(mini_recipe, tmp_path / "exp", monkeypatch, "--cache-feats", "false")
    fset = tr.data.train_sets["asr_fr"]
    bad = fset.examples[0].utt_id
    fset._scp[bad] = str(tmp_path / "missing.ark") + ":7"  # the workers fork after this
    with StepSource(tr.data, ["asr_fr"], 1, num_workers=1, prefetch=1) as src:
        with pytest.raises(DataError) as e:
            for _ in range(2 * tr.data.batch_counts["asr_fr"]):
                src.next()
    msg = str(e.value)
    assert bad in msg and "missing.ark" in msg and "Traceback" not in msg


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_training_with_a_worker_logs_the_wait_and_matches_in_process(mini_recipe, tmp_path, monkeypatch, caplog):
    """Two steps with --num-workers 1 end at the same model as two steps read in-process; the
    progress line reports the fraction of time spent waiting for input."""
    models = []
    for workers in ("0", "1"):
        with caplog.at_level(logging.INFO, logger="osoup.train"):
            tr = _trainer(mini_recipe, tmp_path / f"exp{workers}", monkeypatch, "--num-workers", workers,
                          "--epochs", "1", "--steps-per-epoch", "2", "--log-interval", "1")
            assert tr.num_workers == int(workers)
            tr.run()
        models.append(tr.model.state_dict())
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    lines = [r.getMessage() for r in caplog.records if "step 2/2" in r.getMessage()]
    assert len(lines) == 2 and all(" | data wait " in ln and "% | ETA" in ln for ln in lines)
    assert "input: 1 loader workers (--num-workers 1), 2 steps ahead" in caplog.text


def _tiny_set(tmp: Path, n: int = 12) -> FeatureSet:
    """``n`` random utterances of 30-120 frames, dumped like stage 3 does."""
    import kaldiio

    rng = np.random.default_rng(0)
    lens = [int(x) for x in rng.integers(30, 120, n)]
    with kaldiio.WriteHelper(f"ark,scp:{tmp / 'feats.ark'},{tmp / 'feats.scp'}") as w:
        for i, t in enumerate(lens):
            w(f"u{i:02d}", rng.standard_normal((t, 80)).astype(np.float32))
    (tmp / "utt2num_frames").write_text("".join(f"u{i:02d} {t}\n" for i, t in enumerate(lens)), encoding="utf-8")
    return FeatureSet([tmp])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_worker_batches_copy_to_the_device_unchanged(tmp_path, device):
    """A worker's batches equal the in-process ones on ``device``; for CUDA they arrive pinned."""
    fset = _tiny_set(tmp_path)
    data = TrainData(train_sets={"x": fset}, samplers={"x": ObjectiveSampler(make_batches(fset.examples, 400, 4), 1)})
    pin = device == "cuda"
    with StepSource(lookahead(data), ["x"], 1) as a, StepSource(data, ["x"], 1, 1, 2, pin_memory=pin) as b:
        for _ in range(5):
            (ba, _), (bb, _) = a.next(), b.next()
            moved = bb.to(torch.device(device))
            for ha, hb, hm in zip(ba.halves, bb.halves, moved.halves):
                assert hb.feats.is_pinned() == hb.lengths.is_pinned() == pin and hm.feats.device.type == device
                assert torch.equal(hm.feats.cpu(), ha.feats) and torch.equal(hm.lengths.cpu(), ha.lengths)


def test_wait_fraction_is_the_share_of_time_since_the_last_line(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    p = EpochProgress(["a"], steps=10, first_step=0, epoch=1, log_interval=2)
    now[0] = 110.0
    p.data_wait = 2.5
    assert p.wait_fraction() == pytest.approx(0.25)
    p.maybe_log(1, {}, None)  # a log line starts a new interval
    now[0] = 120.0
    p.data_wait = 3.5
    assert p.wait_fraction() == pytest.approx(0.1)


def test_auto_workers_follow_the_device():
    assert resolve_num_workers("auto", torch.device("cpu")) == 0
    assert resolve_num_workers("auto", torch.device("cuda")) == 2
    assert resolve_num_workers(3, torch.device("cuda")) == 3
    with pytest.raises(DataError, match="--num-workers"):
        resolve_num_workers(-1, torch.device("cpu"))


@pytest.mark.parametrize("option,value,allowed", [
    ("--num-workers", "-1", "auto or a whole number >= 0"), ("--num-workers", "two", "auto or a whole number"),
    ("--prefetch", "-1", ">= 0"), ("--prefetch", "1.5", "an integer"),
])
def test_bad_pipeline_options_are_refused(capsys, tmp_path, option, value, allowed):
    exp = tmp_path / "exp"
    rc = train_bin.main(["--exp-dir", str(exp), "--method", "vs", option, value])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR: ")]
    assert rc == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"ERROR: {option} {value} (command line): ") and allowed in errors[0]
    assert not exp.exists()


def test_pipeline_options_parse(tmp_path):
    langs = ["--exp-dir", str(tmp_path / "e"), "--asr-langs", "fr", "--st-langs", "fr"]
    args, _ = train_bin.parse_args([*langs, "--num-workers", "3", "--prefetch", "0"])
    assert (args.num_workers, args.prefetch) == (3, 0)
    args, _ = train_bin.parse_args(langs)
    assert (args.num_workers, args.prefetch) == ("auto", 2)
