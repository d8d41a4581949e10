"""Storage type of the per-objective gradient buffers (osoup.moo.buffers): bf16 halves their
memory while Gramians, λ and the combined direction stay fp32; fp32 (the default) is unchanged,
bit for bit, from the plain formula λ⁺ = Π_Δ(λ − γ G1 G2ᵀ λ), d = λ⁺ᵀ (G1 + G2) / 2."""
from __future__ import annotations

import pytest
import torch

from osoup.moo import make_soup, project_simplex
from osoup.moo import buffers as B

NAMES = ["a", "b", "c"]


def _toy(seed: int = 0) -> tuple[torch.nn.Sequential, dict[str, list[torch.nn.Parameter]], dict]:
    """A 3-layer shared MLP, one linear head per objective, fixed data per (objective, half)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 8))
    heads = {n: list(torch.nn.Linear(8, 1).parameters()) for n in NAMES}
    data = {(n, h): (torch.randn(5, 6), torch.randn(5, 1) * (1 + i)) for i, n in enumerate(NAMES) for h in (0, 1)}
    return net, heads, data


def _groups(net: torch.nn.Sequential) -> dict[str, list[torch.nn.Parameter]]:
    return {f"l{i}": list(net[i].parameters()) for i in (0, 2, 4)}


def _loss(net, heads, data, name: str, half: int) -> torch.Tensor:
    x, y = data[name, half]
    w, b = heads[name]
    return ((net(x) @ w.T + b - y) ** 2).mean()


def _train(dtype: torch.dtype | str, steps: int, **kw) -> tuple[list[torch.Tensor], list[torch.Tensor], object]:
    """λ and the shared parameters' .grad after each of ``steps`` SGD steps of a vs soup."""
    net, heads, data = _toy()
    groups = _groups(net) if kw.pop("select", False) else None
    extra = dict(layer_groups=groups, moo_layers=2, conflict_interval=3) if groups else {}
    soup = make_soup("vs", list(net.parameters()), heads, NAMES, None, modo={"gamma": 0.5, "normalize": "mean-diag"},
                     buffer_dtype=dtype, **extra, **kw)
    params = list(net.parameters()) + [p for hp in heads.values() for p in hp]
    lams, grads = [], []
    for step in range(steps):
        soup.zero_grad()
        soup.begin_step(0.0)
        for n in soup.objectives:
            for h in (0, 1):
                soup.backward(n, h, _loss(net, heads, data, n, h))
        stats = soup.step(0.0)
        lams.append(stats["lambda/1"].clone())
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]).clone())
        with torch.no_grad():
            for p in params:
                p -= 0.05 * p.grad
    return lams, grads, soup


@pytest.mark.parametrize("kw", [{}, {"gram_params": "all"}, {"select": True}], ids=["shared", "heads", "layers"])
def test_bf16_buffers_follow_the_fp32_lambda(kw):
    """Over 8 steps (λ moving far from uniform) bf16 buffers give λ within 2e-3 and a combined
    direction within 1% (relative norm) of fp32: bf16 keeps 8 significant bits per coordinate,
    and the Gramian is accumulated in fp32, so its relative error stays near 2^-8."""
    lam32, g32, _ = _train(torch.float32, 8, **kw)
    lam16, g16, _ = _train("bf16", 8, **kw)
    assert not torch.allclose(lam32[-1], torch.full((3,), 1 / 3), atol=0.05)  # λ really moved
    for a, b in zip(lam32, lam16):
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, atol=2e-3), (a, b)
    for a, b in zip(g32, g16):
        assert b.dtype == torch.float32
        assert float((a - b).norm() / a.norm()) < 1e-2


def test_bf16_buffer_is_bf16_and_half_the_memory():
    _, _, soup32 = _train(torch.float32, 1)
    _, _, soup16 = _train(torch.bfloat16, 1, gram_params="all")
    _, _, soup32h = _train("fp32", 1, gram_params="all")
    theta32, theta16 = soup32.pending_buffers()[0], soup16.pending_buffers()[0]
    assert theta32.dtype == torch.float32 and theta16.dtype == torch.bfloat16
    assert theta16.shape == theta32.shape == (2, 3, sum(p.numel() for p in _toy()[0].parameters()))
    bytes16 = sum(t.numel() * t.element_size() for t in soup16.pending_buffers())
    bytes32 = sum(t.numel() * t.element_size() for t in soup32h.pending_buffers())
    assert {t.dtype for t in soup16.pending_buffers()} == {torch.bfloat16}  # θ and the heads' rows
    assert bytes16 * 2 == bytes32


def test_default_fp32_is_the_plain_formula_bit_for_bit():
    """The default buffers hold fp32 and the step is exactly the unchunked formula (torch.equal)."""
    net, heads, data = _toy()
    w = [torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))]
    gamma = 0.3
    soup = make_soup("vs", w, heads, NAMES, None, modo={"gamma": gamma})

    def loss(n: str, h: int) -> torch.Tensor:
        x, y = data[n, h]
        return ((x @ w[0][:48].view(6, 8) @ heads[n][0].T + heads[n][1] - y) ** 2).mean()

    soup.zero_grad()
    soup.begin_step(0.0)
    for n in NAMES:
        for h in (0, 1):
            soup.backward(n, h, loss(n, h))
    g = soup.pending_buffers()[0].clone()
    assert g.dtype == torch.float32
    stats = soup.step(0.0)
    lam0 = torch.full((3,), 1 / 3)
    lam = project_simplex(lam0 - gamma * ((g[0] @ g[1].T) @ lam0 + 0.0 * lam0))
    assert torch.equal(stats["lambda/1"], lam)
    assert torch.equal(w[0].grad, (lam.repeat(2) @ g.view(6, -1)) * 0.5)


@pytest.mark.parametrize("chunk", [5, 1 << 24])
def test_fp32_products_of_bf16_rows_match_fp64(monkeypatch, chunk):
    """gram_fp32 / combine_rows_fp32 upcast slice by slice (several slices with a tiny chunk)."""
    monkeypatch.setattr(B, "UPCAST_CHUNK", chunk)
    torch.manual_seed(3)
    a, b, w = torch.randn(4, 37).bfloat16(), torch.randn(3, 37).bfloat16(), torch.randn(4)
    gram = B.gram_fp32(a, b)
    assert gram.dtype == torch.float32
    assert torch.allclose(gram.double(), a.double() @ b.double().T, atol=1e-5)
    d = B.combine_rows_fp32(w, a)
    assert d.dtype == torch.float32
    assert torch.allclose(d.double(), w.double() @ a.double(), atol=1e-5)


def test_unknown_buffer_dtype_is_refused():
    net, heads, _ = _toy()
    with pytest.raises(ValueError, match="buffer dtype must be one of fp32, bf16, got 'fp16'"):
        make_soup("vs", list(net.parameters()), heads, NAMES, None, buffer_dtype="fp16")
    with pytest.raises(ValueError, match="float16"):
        make_soup("vs", list(net.parameters()), heads, NAMES, None, buffer_dtype=torch.float16)


def test_train_option_declares_the_buffer_dtype():
    """``osoup-train --moo-buffer-dtype`` defaults to fp32, accepts bf16 and refuses others; every
    accepted name is one make_soup understands."""
    from osoup.train.options import BY_NAME, TrainConfig, violates

    opt = BY_NAME["moo_buffer_dtype"]
    assert TrainConfig().moo_buffer_dtype == "fp32"
    assert not violates(opt, "bf16") and violates(opt, "fp16")
    assert [B.buffer_dtype_of(c) for c in opt.choices] == [torch.float32, torch.bfloat16]
