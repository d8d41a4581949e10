"""CTC greedy and prefix beam search against hand examples, brute force and a plain reference."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from osoup.decode.ctc import greedy_search, prefix_beam_search, prefix_beam_search_nbest


def _log(probs: list[list[float]]) -> torch.Tensor:
    """One utterance of per-frame probabilities as log_probs[1, T, V]."""
    return torch.tensor(probs, dtype=torch.float64).log()[None]


def test_greedy_hand_examples():
    # V = 4 (0 = blank). Frames as argmax sequences.
    def one_hot_seq(seq, V=4):
        lp = torch.full((len(seq), V), -10.0)
        lp[torch.arange(len(seq)), torch.tensor(seq)] = 0.0
        return lp

    seqs = [
        [1, 1, 0, 1, 2, 2, 0, 0, 3],  # repeat merged; blank separates a real repeat
        [0, 0, 0, 0, 0, 0, 0, 0, 0],  # all blank -> empty
        [2, 2, 2, 3, 3, 1, 1, 1, 1],  # only the first 4 frames count
        [3, 0, 3, 0, 3, 1, 2, 3, 1],  # length 0
    ]
    lp = torch.stack([one_hot_seq(s) for s in seqs])
    lengths = torch.tensor([9, 9, 4, 0])
    assert greedy_search(lp, lengths) == [[1, 1, 2, 3], [], [2, 3], []]
    # A different blank index.
    assert greedy_search(lp[:1], torch.tensor([9]), blank=1) == [[0, 2, 0, 3]]


def test_greedy_repeat_across_length_boundary_and_errors():
    lp = torch.zeros(2, 3, 2)
    lp[..., 1] = 1.0  # token 1 everywhere
    assert greedy_search(lp, torch.tensor([3, 1])) == [[1], [1]]
    with pytest.raises(ValueError, match="lengths"):
        greedy_search(lp, torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="shape"):
        greedy_search(lp[0], torch.tensor([3]))


def test_beam_beats_greedy_when_alignments_sum():
    # Each frame: blank 0.6, 'a' 0.4. Best path is "--" (0.36) -> empty; but the labelling
    # "a" has paths aa, a-, -a: 0.16 + 0.24 + 0.24 = 0.64.
    lp = _log([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_search(lp, torch.tensor([2])) == [[]]
    assert prefix_beam_search(lp, torch.tensor([2]), beam=4) == [[1]]
    (best, score), second = prefix_beam_search_nbest(lp, torch.tensor([2]), beam=4, nbest=2)[0]
    assert best == [1] and score == pytest.approx(math.log(0.64))
    assert second[0] == [] and second[1] == pytest.approx(math.log(0.36))


def test_beam_repeated_token_needs_blank():
    # "a - a" -> [a, a]; "a a a" -> [a]; the double-a labelling gets only blank-separated paths.
    lp = _log([[0.1, 0.9], [0.8, 0.2], [0.1, 0.9]])
    nb = dict((tuple(h), s) for h, s in prefix_beam_search_nbest(lp, torch.tensor([3]), beam=8, nbest=8)[0])
    p = [[0.1, 0.9], [0.8, 0.2], [0.1, 0.9]]
    aa = p[0][1] * p[1][0] * p[2][1]  # only a-a
    assert nb[(1, 1)] == pytest.approx(math.log(aa))
    assert prefix_beam_search(lp, torch.tensor([3]), beam=8) == [[1, 1]]
    lp2 = _log([[0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    assert prefix_beam_search(lp2, torch.tensor([3]), beam=8) == [[1]]


def _brute_force(probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """P(labelling) = sum over all V**T alignments that collapse to it."""
    T, V = probs.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = 1.0
        for t, k in enumerate(path):
            p *= float(probs[t, k])
        lab, prev = [], None
        for k in path:
            if k != prev and k != blank:
                lab.append(k)
            prev = k
        out[tuple(lab)] = out.get(tuple(lab), 0.0) + p
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_matches_brute_force_distribution(seed):
    g = torch.Generator().manual_seed(seed)
    T, V = 5, 3  # 243 alignments; at most 63 distinct prefixes, so beam 64 is exact
    probs = (torch.randn(T, V, generator=g, dtype=torch.float64) * 1.5).softmax(-1)
    truth = _brute_force(probs)
    nbest = prefix_beam_search_nbest(probs.log()[None], torch.tensor([T]), beam=64,
                                     prune_topk=V, nbest=64)[0]
    got = {tuple(h): s for h, s in nbest}
    assert set(got) == set(truth)
    for lab, p in truth.items():
        assert got[lab] == pytest.approx(math.log(p), abs=1e-9)
    best_true = max(truth, key=truth.get)
    assert tuple(nbest[0][0]) == best_true
    assert tuple(prefix_beam_search(probs.log()[None], torch.tensor([T]), beam=64, prune_topk=V)[0]) == best_true


def _reference_beam(lp: torch.Tensor, beam: int, topk: int, blank: int = 0):
    """Plain per-prefix dictionary implementation with the same pruning rule."""
    T, V = lp.shape
    ninf = float("-inf")

    def lse(*xs):
        m = max(xs)
        return m if m == ninf else m + math.log(sum(math.exp(x - m) for x in xs))

    beams = {(): (0.0, ninf)}
    for t in range(T):
        row = lp[t].tolist()
        cands = sorted((k for k in range(V) if k != blank), key=lambda k: -row[k])[:topk]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, b, nb):
            cur = nxt.setdefault(prefix, [ninf, ninf])
            cur[0], cur[1] = lse(cur[0], b), lse(cur[1], nb)

        for prefix, (pb, pnb) in beams.items():
            add(prefix, lse(pb, pnb) + row[blank], ninf)
            if prefix:
                add(prefix, ninf, pnb + row[prefix[-1]])
            for k in cands:
                src = pb if prefix and prefix[-1] == k else lse(pb, pnb)
                add(prefix + (k,), ninf, src + row[k])
        ranked = sorted(nxt.items(), key=lambda kv: -lse(*kv[1]))[:beam]
        beams = {p: tuple(v) for p, v in ranked if lse(*v) > ninf}
    return sorted(((list(p), lse(*v)) for p, v in beams.items()), key=lambda x: -x[1])


def test_batched_beam_matches_reference_with_pruning_and_lengths():
    g = torch.Generator().manual_seed(7)
    B, T, V = 5, 12, 7
    lp = (torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2).log_softmax(-1)
    lengths = torch.tensor([12, 9, 1, 0, 6])
    beam, topk = 4, 3
    got = prefix_beam_search_nbest(lp, lengths, beam=beam, prune_topk=topk, nbest=beam)
    for b in range(B):
        ref = _reference_beam(lp[b, : lengths[b]], beam, topk)
        assert [h for h, _ in got[b]] == [h for h, _ in ref]
        assert [s for _, s in got[b]] == pytest.approx([s for _, s in ref], abs=1e-9)
    assert prefix_beam_search(lp, lengths, beam=beam, prune_topk=topk) == [r[0][0] for r in got]
    # A batch member's result does not depend on its neighbours.
    alone = prefix_beam_search(lp[1:2], lengths[1:2], beam=beam, prune_topk=topk)
    assert alone[0] == got[1][0][0]


def test_empty_inputs():
    lp = torch.zeros(2, 0, 5)
    lengths = torch.tensor([0, 0])
    assert greedy_search(lp, lengths) == [[], []]
    assert prefix_beam_search(lp, lengths) == [[], []]
    assert prefix_beam_search_nbest(lp, lengths, nbest=3) == [[([], 0.0)], [([], 0.0)]]
    assert prefix_beam_search(torch.zeros(0, 4, 3), torch.zeros(0, dtype=torch.long)) == []


def test_beam_float32_and_nonzero_blank():
    g = torch.Generator().manual_seed(3)
    lp = torch.randn(2, 8, 5, generator=g).log_softmax(-1)
    lengths = torch.tensor([8, 5])
    hyps = prefix_beam_search(lp, lengths, beam=6, blank=2, prune_topk=4)
    for b in range(2):
        ref = _reference_beam(lp[b, : lengths[b]].double(), 6, 4, blank=2)
        assert hyps[b] == ref[0][0]
        assert 2 not in hyps[b]


# -- loading the model: a damaged file is one clear error (osoup.train.experiment) -------------
def _only_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and "Traceback" not in err, err
    return lines[0]


def test_decode_truncated_checkpoint_or_pack_is_one_error_line(tmp_path, monkeypatch, capsys):
    import os
    import shutil

    from osoup.bin.decode import main
    from test_conflict import _fake_experiment

    exp, _ = _fake_experiment(tmp_path)
    shutil.copy(exp / "best.pt", exp / "latest.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["--exp-dir", "exp/vm", "--model", "latest.pt", "--pack-out", "model.pack.pt", "--verbose", "0"]) == 0
    os.truncate(exp / "best.pt", (exp / "best.pt").stat().st_size // 2)
    capsys.readouterr()
    assert main(["--exp-dir", "exp/vm", "--sets", "test_en", "--verbose", "0"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith("ERROR: exp/vm/best.pt: cannot read this model checkpoint (PytorchStreamReader")
    assert "truncated or corrupt" in line and "other model files in exp/vm: latest.pt" in line
    assert not (exp / "decode_greedy").exists()
    assert main(["--exp-dir", "exp/vm", "--model", "avg3.pt", "--sets", "test_en", "--verbose", "0"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert "exp/vm/avg3.pt: not found (written by osoup-train (recipe stage 6))" in line and "latest.pt" in line
    os.truncate("model.pack.pt", os.path.getsize("model.pack.pt") // 2)
    assert main(["--packed", "model.pack.pt", "--head", "asr_en", "a.wav", "--verbose", "0"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith("ERROR: model.pack.pt: cannot read this packed model (")
    assert "re-create it with osoup-decode --exp-dir EXP --pack-out FILE" in line


def test_collapse_best_path_matches_greedy():
    from osoup.decode.ctc import collapse_best_path

    best = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3], [0, 2, 2, 2, 0, 0, 1, 1]])
    assert collapse_best_path(best, torch.tensor([8, 4])) == [[1, 1, 2, 3], [2]]
    g = torch.Generator().manual_seed(5)
    lp = torch.randn(3, 9, 6, generator=g).log_softmax(-1)
    lengths = torch.tensor([9, 0, 5])
    assert collapse_best_path(lp.argmax(-1), lengths) == greedy_search(lp, lengths)
