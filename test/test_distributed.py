"""Data parallelism (docs/distributed.md): a 2-process torchrun run on CPU (gloo) follows the
same loss and λ trajectories as a single process that draws the same global batch
(``--simulate-ranks 2``), and λ is identical on both ranks. Plus the reduction helpers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import recipe_env, train_cmd

from osoup.moo import make_soup
from osoup.train import distributed as D

# Conditions under which the two runs must agree to rounding: no dropout, no SpecAugment, layer
# norm in the convolution module (BatchNorm statistics would depend on how the batch is split),
# no SSL objective (CPC draws random negatives per padded batch shape, so its losses agree only
# in distribution; its count is reduced the same way as the CTC token counts).
ARGS = ["--dump-dir", "dump", "--token-dir", "data/token", "--asr-langs", "fr", "--st-langs", "fr",
        "--ssl", "none", "--recipe", "vs", "--epochs", "2", "--steps-per-epoch", "3", "--max-frames", "4000",
        "--max-utts", "8", "--threads", "1", "--dropout", "0", "--specaug", "false", "--conv-norm", "layer",
        "--scheduler", "none", "--gamma", "0.02", "--gram-normalize", "mean-diag", "--log-interval", "1",
        "--trace", "--lr-backbone", "2e-3", "--lr-heads", "2e-3"]


def _trace(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(mini_recipe, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = subprocess.run(train_cmd("--exp-dir", str(one), *ARGS, "--simulate-ranks", "2"), cwd=mini_recipe,
                        env=recipe_env(), capture_output=True, text=True, timeout=240)
    assert p1.returncode == 0, p1.stderr[-4000:]
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                         "-m", "osoup.bin.train", "--exp-dir", str(two), *ARGS, "--dist-timeout", "60"],
                        cwd=mini_recipe, env=recipe_env(), capture_output=True, text=True, timeout=240)
    assert p2.returncode == 0, p2.stderr[-4000:]
    ref = _trace(one / "trace.jsonl")
    r0, r1 = _trace(two / "trace.rank0.jsonl"), _trace(two / "trace.rank1.jsonl")
    assert len(ref) == len(r0) == len(r1) == 6
    assert r0 == r1  # the same global losses and bit-identical λ on both ranks
    lam_moved = False
    for a, b in zip(ref, r0):
        assert a["step"] == b["step"]
        for n in a["losses"]:
            assert b["losses"][n] == pytest.approx(a["losses"][n], rel=1e-4), (a, b)
        la, lb = torch.tensor(a["lambda"]), torch.tensor(b["lambda"])
        assert torch.allclose(la, lb, atol=1e-4), (a, b)
        lam_moved |= not torch.allclose(la, torch.full_like(la, 0.5), atol=1e-3)
    assert lam_moved  # λ really moved, so the comparison covers the Gramian's reduction
    # Final parameters are not compared: Adam's m/sqrt(v) turns rounding-level differences of
    # near-zero gradients into lr-sized steps; the losses above already depend on every update.
    assert (two / "latest.pt").is_file() and not list(two.glob("checkpoint.*.pt.*"))
    assert "Traceback" not in (two / "train.rank1.log").read_text(encoding="utf-8")


def test_simulated_ranks_draw_the_union_of_the_ranks_batches():
    from osoup.data.dataset import ObjectiveSampler, split_halves

    batches = [[2 * i, 2 * i + 1, 100 + i, 200 + i] for i in range(6)]
    ranks = [ObjectiveSampler(batches, seed=5, rank=r, world_size=2) for r in range(2)]
    expect = []
    for _ in range(5):
        parts = [split_halves(s.next()) for s in ranks]
        expect.append(([i for h, _ in parts for i in h], [i for _, h in parts for i in h]))

    from osoup.train.data import TrainData, draw_halves

    data = TrainData(samplers={"x": ObjectiveSampler(batches, seed=5, rank=0, world_size=2)},
                     sim_samplers={"x": [ObjectiveSampler(batches, seed=5, rank=1, world_size=2)]})
    got = [draw_halves(data, "x") for _ in range(5)]
    assert got == expect
    for h0, h1 in got:
        assert set(h0).isdisjoint(h1) and len(h0) == len(h1) == 4


def test_reductions_are_no_ops_in_one_process():
    ts = [torch.arange(3.0), torch.ones(2, 2)]
    D.all_reduce_fused(ts)
    D.all_reduce_buckets(ts)
    assert torch.equal(ts[0], torch.arange(3.0)) and torch.equal(ts[1], torch.ones(2, 2))
    assert float(D.global_count(0, torch.device("cpu"))) == 1.0
    assert float(D.global_count(7, torch.device("cpu"))) == 7.0


def test_soup_reduce_hook_sees_every_pending_gradient():
    """reduce_pending hands over G1/G2 of the MOO layers and the losses. Doubling them there
    (what a sum over 2 identical workers does) must give λ⁺ = Π(λ − γ (2G1)(2G2)ᵀ λ) and the
    direction λ⁺ᵀ(2G1 + 2G2)/2, checked against the formula."""
    from osoup.moo import project_simplex

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    heads = {"a": [torch.nn.Parameter(torch.randn(4))], "b": [torch.nn.Parameter(torch.randn(4))]}
    x = torch.randn(2, 4)
    gamma = 0.1

    def loss(name: str, h: int) -> torch.Tensor:
        return ((w * heads[name][0]) @ x[h]) ** 2

    seen = []

    def double(ts):
        seen.extend(tuple(t.shape) for t in ts)
        torch._foreach_mul_(ts, 2.0)

    soup = make_soup("vs", [w], heads, ["a", "b"], None, modo={"gamma": gamma})
    soup.zero_grad()
    soup.begin_step(0.0)
    for name in heads:
        for h in (0, 1):
            soup.backward(name, h, loss(name, h))
    assert soup.direct_params() == []  # every θ gradient is in the per-objective buffer
    soup.reduce_pending(double)
    stats = soup.step(0.0)
    assert seen == [(2, 2, 4), (2, 2)]  # G = [halves, objectives, D], then the losses
    assert torch.allclose(stats["losses"], 2 * torch.stack([(loss(n, 0) + loss(n, 1)) / 2 for n in heads]).detach())

    g = torch.stack([torch.stack([torch.autograd.grad(loss(n, h), w)[0] for n in heads]) for h in (0, 1)]) * 2
    lam0 = torch.full((2,), 0.5)
    lam = project_simplex(lam0 - gamma * (g[0] @ g[1].T) @ lam0)
    assert torch.allclose(stats["lambda/1"], lam, atol=1e-6)
    assert torch.allclose(w.grad, lam @ (g[0] + g[1]) / 2, atol=1e-5)
