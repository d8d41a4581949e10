"""Batching, per-objective samplers, objective specs and checkpoint helpers of the trainer."""
from __future__ import annotations

import pytest
import torch

from osoup.data.dataset import Example, ObjectiveSampler, make_batches, split_halves
from osoup.data.objectives import build_objectives
from osoup.fileio import DataError
from osoup.train.checkpoint import average_models, epoch_checkpoints, prune_checkpoints, save_atomic


def _examples(lengths):
    return [Example(f"u{i:03d}", n, [1]) for i, n in enumerate(lengths)]


def test_make_batches_respects_limits_and_covers_everything():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(50, 600, (101,), generator=g).tolist()
    exs = _examples(lengths)
    batches = make_batches(exs, max_frames=2000, max_utts=8)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(exs)))  # every utterance exactly once
    for b in batches:
        assert 2 <= len(b) <= 8 or len(batches) == 1
        longest = max(lengths[i] for i in b)
        # the padded size stays within the limit, unless the batch is at its 2-utterance minimum
        assert longest * len(b) <= 2000 or len(b) == 2
        # length-bucketed: a batch spans a contiguous range of the sorted lengths
        srt = sorted(lengths)
        lo, hi = min(lengths[i] for i in b), longest
        assert srt.index(lo) + len(b) - 1 <= len(srt) - 1 - srt[::-1].index(hi)


def test_split_halves_are_disjoint_and_complete():
    h0, h1 = split_halves([5, 3, 9, 1, 7])
    assert set(h0).isdisjoint(h1) and sorted(h0 + h1) == [1, 3, 5, 7, 9]
    assert abs(len(h0) - len(h1)) <= 1


def test_sampler_cycles_reshuffles_and_resumes_exactly():
    batches = [[i] for i in range(7)]
    s = ObjectiveSampler(batches, seed=3)
    first_cycle = [s.next()[0] for _ in range(7)]
    assert sorted(first_cycle) == list(range(7))
    second_cycle = [s.next()[0] for _ in range(7)]
    assert sorted(second_cycle) == list(range(7)) and second_cycle != first_cycle
    # resume from a saved position: the continuation is identical
    s2 = ObjectiveSampler(batches, seed=3)
    for _ in range(10):
        s2.next()
    state = s2.state_dict()
    expect = [s2.next()[0] for _ in range(12)]
    s3 = ObjectiveSampler(batches, seed=99)
    s3.load_state_dict(state)
    assert [s3.next()[0] for _ in range(12)] == expect


def test_sampler_shards_per_rank():
    batches = [[i] for i in range(8)]
    a = ObjectiveSampler(batches, seed=1, rank=0, world_size=2)
    b = ObjectiveSampler(batches, seed=1, rank=1, world_size=2)
    got_a = {a.next()[0] for _ in range(4)}
    got_b = {b.next()[0] for _ in range(4)}
    assert got_a.isdisjoint(got_b) and got_a | got_b == set(range(8))


def test_build_objectives_reports_every_missing_piece(tmp_path):
    with pytest.raises(DataError) as e:
        build_objectives(tmp_path / "dump", tmp_path / "token", ["fr"], ["fr"], "cpc")
    msg = str(e.value)
    assert "asr_fr" in msg and "st_fr" in msg and "objective ssl" in msg and "spm.model" in msg
    with pytest.raises(DataError, match="unknown --ssl"):
        build_objectives(tmp_path / "dump", tmp_path / "token", [], [], "wav2vec")


def test_build_objectives_st_units_reads_its_own_dump_and_tokenizer(tmp_path):
    for d in ("dump/st/train_fr", "dump/st_unigram300/train_fr", "token/st_en", "token/st_en_unigram300"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("dump/st/train_fr/feats.scp", "dump/st_unigram300/train_fr/feats.scp", "token/st_en/spm.model",
              "token/st_en_unigram300/spm.model"):
        (tmp_path / d).write_text("x\n", encoding="utf-8")
    (spec,) = build_objectives(tmp_path / "dump", tmp_path / "token", [], ["fr"], None)
    assert spec.train_dirs == [tmp_path / "dump/st/train_fr"] and spec.token_dir == tmp_path / "token/st_en"
    (spec,) = build_objectives(tmp_path / "dump", tmp_path / "token", [], ["fr"], None, st_units="unigram300")
    assert spec.train_dirs == [tmp_path / "dump/st_unigram300/train_fr"]
    assert spec.token_dir == tmp_path / "token/st_en_unigram300"
    with pytest.raises(DataError, match="dump/st_bpe100/train_fr/feats.scp not found"):
        build_objectives(tmp_path / "dump", tmp_path / "token", [], ["fr"], None, st_units="bpe100")
    with pytest.raises(DataError, match="--st-units '../x'"):
        build_objectives(tmp_path / "dump", tmp_path / "token", [], ["fr"], None, st_units="../x")


def test_checkpoint_average_and_prune(tmp_path):
    for n, v in enumerate([1.0, 2.0, 6.0], 1):
        save_atomic({"model": {"w": torch.full((2,), v), "steps": torch.tensor(n)}}, tmp_path / f"checkpoint.{n}.pt")
    avg = average_models(epoch_checkpoints(tmp_path))
    assert torch.allclose(avg["w"], torch.full((2,), 3.0))
    assert int(avg["steps"]) == 3  # integer buffers come from the last checkpoint
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["checkpoint.2.pt", "checkpoint.3.pt"]
    assert not list(tmp_path.glob(".*.tmp"))
