"""GPU checks of the MOO core (``pytest -m gpu``; skipped without CUDA), run by
``bench/gpu_check.sh`` (docs/distributed.md, "GPU check"):

- λ and the per-objective buffers live on the parameters' device;
- :meth:`Soup.step` never synchronises with the host under CUDA (sync debug mode "error");
- bf16 and fp16 autocast training of the tiny SoupModel: finite losses, λ moves;
- two ranks (NCCL on 2 GPUs, else gloo; on CPU with ``OSOUP_GPU_CHECK_DEVICE=cpu``) that each
  take half of every objective-half's rows follow the λ and direction of one process on the union.

``test_gpu_check_dry_run`` (not marked) runs ``bench/gpu_check.sh --dry-run`` on CPU.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from osoup.moo import make_soup
from osoup.train.distributed import all_reduce_fused

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("OSOUP_GPU_CHECK_DEVICE", "cuda")
needs_device = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                  reason="needs CUDA (OSOUP_GPU_CHECK_DEVICE=cpu runs the CPU-capable checks on CPU)")
NAMES = ["a", "b", "c"]


def _toy(device: str, seed: int = 0):
    """Shared vector θ, one head per objective; rows of (x, y) per (objective, half)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(32, generator=g).to(device))
    heads = {n: [torch.nn.Parameter(torch.randn(32, generator=g).to(device))] for n in NAMES}
    data = {(n, h): (torch.randn(8, 32, generator=g).to(device), torch.randn(8, generator=g).to(device) * (i + 1))
            for i, n in enumerate(NAMES) for h in (0, 1)}
    return w, heads, data


def _loss(w, heads, data, n: str, h: int, rows: slice = slice(None)) -> torch.Tensor:
    """Sum over ``rows`` divided by the GLOBAL row count (8): ranks' losses add up to the union's."""
    x, y = data[n, h]
    return (((x[rows] * w * heads[n][0]).sum(1) - y[rows]) ** 2).sum() / x.shape[0]


def _soup(w, heads, **kw):
    return make_soup("vs", [w], heads, NAMES, None, modo={"gamma": 0.5, "normalize": "mean-diag"}, **kw)


def _run(soup, w, heads, data, rows: slice, steps: int, reduce=None) -> list[torch.Tensor]:
    """``steps`` SGD steps; returns [λ, θ.grad] per step (after the optional cross-rank reduce)."""
    out = []
    for _ in range(steps):
        soup.zero_grad()
        soup.begin_step(0.0)
        for n in NAMES:
            for h in (0, 1):
                soup.backward(n, h, _loss(w, heads, data, n, h, rows))
        if reduce is not None:
            soup.reduce_pending(reduce)
            reduce([p.grad for hp in heads.values() for p in hp])
        stats = soup.step(0.0)
        out.append(torch.cat([stats["lambda/1"], w.grad]).cpu())
        with torch.no_grad():
            for p in [w] + [p for hp in heads.values() for p in hp]:
                p -= 0.01 * p.grad
    return out


@pytest.mark.gpu
@needs_device
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_lambda_and_buffers_live_on_the_device(dtype):
    w, heads, data = _toy(DEVICE)
    soup = _soup(w, heads, buffer_dtype=dtype, gram_params="all")
    soup.zero_grad()
    for n in NAMES:
        for h in (0, 1):
            soup.backward(n, h, _loss(w, heads, data, n, h))
    bufs = soup.pending_buffers()
    assert bufs and all(t.device == w.device for t in bufs)
    assert {t.dtype for t in bufs} == {torch.float32 if dtype == "fp32" else torch.bfloat16}
    stats = soup.step(0.0)
    assert stats["lambda/1"].device == w.device and stats["lambda/1"].dtype == torch.float32
    assert all(lv.weighting.weights.device == w.device for lv in soup.levels)
    assert w.grad.device == w.device


@pytest.mark.gpu
@needs_device
@pytest.mark.parametrize("method", ["vs", "vm"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_soup_step_does_not_synchronise_with_the_host(method, dtype):
    if not DEVICE.startswith("cuda"):
        pytest.skip("CUDA sync debug mode")
    w, heads, data = _toy(DEVICE)
    kw = {"levels": "a,b>c"} if method == "vm" else {}
    soup = make_soup(method, [w], heads, NAMES, None, buffer_dtype=dtype, **kw)
    for step in range(3):
        soup.zero_grad()
        soup.begin_step(step / 3)
        for n in NAMES:
            for h in (0, 1):
                soup.backward(n, h, _loss(w, heads, data, n, h))
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            stats = soup.step(step / 3)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(w.grad).all() and stats["lambda/1"].device == w.device


@pytest.mark.gpu
@needs_device
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_of_the_tiny_model(amp):
    """4 steps of vs on the tiny SoupModel under autocast (fp16: static loss scale 1024,
    unscaled before the λ step): finite losses, λ leaves the uniform start."""
    from osoup.nets.configs import MODEL_CONFIGS
    from osoup.nets.model import SoupModel

    torch.manual_seed(0)
    names = ["asr_x", "st_x", "ssl"]
    model = SoupModel(MODEL_CONFIGS["tiny"], {"asr_x": 50, "st_x": 50}, ssl="cpc").to(DEVICE).train()
    heads = {n: model.objective_head_parameters(n) for n in names}
    soup = make_soup("vs", model.shared_parameters(), heads, names, "ssl",
                     modo={"gamma": 1.0, "normalize": "mean-diag"}, buffer_dtype="bf16")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    dtype, scale = (torch.bfloat16, 1.0) if amp == "bf16" else (torch.float16, 1024.0)
    feats = {(n, h): torch.randn(2, 150, 80, device=DEVICE) for n in names for h in (0, 1)}
    lengths = torch.full((2,), 150, device=DEVICE)
    targets = torch.randint(1, 50, (2, 8), device=DEVICE)
    tlen = torch.full((2,), 8, device=DEVICE)
    for step in range(4):
        soup.zero_grad()
        soup.begin_step(0.0)
        for n in names:
            for h in (0, 1):
                with torch.autocast(torch.device(DEVICE).type, dtype=dtype):
                    if n == "ssl":
                        s, cnt = model.ssl_loss(feats[n, h], lengths)
                        loss = s / cnt.clamp_min(1)
                    else:
                        loss = model.supervised_loss(n, feats[n, h], lengths, targets, tlen) / tlen.sum()
                soup.backward(n, h, loss * scale)
        soup.reduce_pending(lambda ts: torch._foreach_mul_(ts, 1.0 / scale))
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, 1.0 / scale)
        stats = soup.step(0.0)
        assert torch.isfinite(stats["losses"]).all(), stats["losses"]
        assert all(torch.isfinite(g).all() for g in grads)
        opt.step()
    assert not torch.allclose(stats["lambda/1"].cpu(), torch.full((3,), 1 / 3), atol=1e-3), stats["lambda/1"]


def _rank(rank: int, world: int, init: str, out: str, steps: int) -> None:
    """One rank of the equivalence check: rows ``rank::world`` of every objective-half."""
    nccl = DEVICE.startswith("cuda") and torch.cuda.device_count() >= world
    device = f"cuda:{rank}" if nccl else DEVICE
    dist.init_process_group("nccl" if nccl else "gloo", init_method=init, rank=rank, world_size=world)
    try:
        w, heads, data = _toy(device)
        got = _run(_soup(w, heads), w, heads, data, slice(rank, None, world), steps, reduce=all_reduce_fused)
        torch.save(torch.stack(got), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.gpu
@needs_device
@pytest.mark.timeout(120)
def test_two_ranks_follow_one_process_on_the_union(tmp_path):
    """2 ranks (each half of every batch, gradients and losses summed by all_reduce_fused) give
    the λ and θ direction of one process on the whole batch, within fp32 rounding, over 4 steps."""
    steps = 4
    w, heads, data = _toy(DEVICE)
    ref = torch.stack(_run(_soup(w, heads), w, heads, data, slice(None), steps))
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank, args=(2, init, str(tmp_path / "out"), steps), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "out.0"), torch.load(tmp_path / "out.1")
    assert torch.equal(r0, r1)  # every rank computes the same λ and direction
    assert not torch.allclose(ref[-1, :3], torch.full((3,), 1 / 3), atol=1e-3)  # λ moved
    assert torch.allclose(r0, ref, rtol=1e-4, atol=1e-5), (r0 - ref).abs().max()


@pytest.mark.timeout(300)
def test_gpu_check_dry_run(tmp_path):
    """``bench/gpu_check.sh --dry-run`` runs every step on CPU at the smallest size and exits 0."""
    out = tmp_path / "gpu_check"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=str(REPO / "tools" / "venv" / "bin" / "python"))
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=290)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    for step in ("gpu_tests", "bench_moo_step", "bench_profile", "distributed", "bench_input", "bench_encoder"):
        assert f"{step}: " in summary, summary
    assert "FAILED" not in summary, summary
    assert (out / "bench_moo_step.json").is_file()
    assert "batched_joint" in (out / "bench_moo_step.txt").read_text(encoding="utf-8")
    assert "workers" in (out / "bench_input.txt").read_text(encoding="utf-8")  # the benches really ran
    assert "d144" in (out / "bench_encoder.txt").read_text(encoding="utf-8")
