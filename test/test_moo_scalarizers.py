"""Loss-based weightings from torchjd's scalarizers (FAMO, STCH, geometric mean, IMTL-L, RLW,
COSMOS, PBI): differential tests against torchjd on random loss sequences, their place in the
soup (no per-objective buffers, weights known before the step), non-finite losses, checkpoints.

The contract (``osoup/moo/scalarizers.py``): the weights a scalarizer S gives the gradients are
``∂S/∂l``; ours are torchjd's derivative at the losses of the PREVIOUS step.
"""
from __future__ import annotations

import pytest
import torch

from osoup.moo import make_soup, make_weighting
from osoup.moo.famo import FAMO
from osoup.moo.loss_weighting import IMTLL
from osoup.moo.registry import LOSS_BASED
from osoup.moo.scalarizers import COSMOS, PBI, STCH, GeometricMean, RandomLossWeighting
from test_moo import OBJ, NoHostSync, Toy

F64 = torch.float64


def _losses(k: int, n: int, seed: int) -> list[torch.Tensor]:
    """A random positive loss sequence: per-objective scales 0.1..10, decaying, noisy."""
    g = torch.Generator().manual_seed(seed)
    scale = 10 ** (torch.rand(k, generator=g, dtype=F64) * 2 - 1)
    return [scale * (1.5 - t / (2 * n)) * (0.7 + 0.6 * torch.rand(k, generator=g, dtype=F64)) for t in range(n)]


def _dS(scalarizer, losses: torch.Tensor) -> torch.Tensor:
    """torchjd's weights: the autograd derivative of the scalarised loss w.r.t. the losses."""
    leaf = losses.detach().clone().requires_grad_(True)
    return torch.autograd.grad(scalarizer(leaf), leaf)[0]


def _stateless_cases(k: int):
    from torchjd import scalarization as sc

    g = torch.Generator().manual_seed(5)
    pref = torch.rand(k, generator=g, dtype=F64) + 0.1
    ref = torch.rand(k, generator=g, dtype=F64) * 0.05
    return [
        (STCH(k), sc.STCH(mu=0.1)),
        (STCH(k, mu=1.0, pref_vector=pref.tolist(), reference=ref.tolist()), sc.STCH(mu=1.0, weights=pref, reference=ref)),
        (GeometricMean(k), sc.GeometricMean()),
        (COSMOS(k), sc.COSMOS(lambda_=1.0, weights=torch.full((k,), 1 / k, dtype=F64))),
        (COSMOS(k, lambda_=4.0, pref_vector=pref.tolist()), sc.COSMOS(lambda_=4.0, weights=pref)),
        (PBI(k), sc.PBI(theta=5.0, weights=torch.full((k,), 1 / k, dtype=F64))),
        (PBI(k, theta=0.5, pref_vector=pref.tolist(), reference=ref.tolist()), sc.PBI(theta=0.5, weights=pref, reference=ref)),
    ]


@pytest.mark.parametrize("case", range(7))
def test_stateless_scalarizers_match_torchjds_derivative(case):
    k = 4
    ours, ref = _stateless_cases(k)[case]
    assert not ours.needs_gram
    torch.testing.assert_close(ours.weights, _dS(ref, torch.ones(k, dtype=F64)), atol=1e-12, rtol=1e-10)
    for t, loss in enumerate(_losses(k, 20, seed=case)):
        before = ours.weights
        got = ours.update(None, loss)
        torch.testing.assert_close(got, _dS(ref, loss), atol=1e-12, rtol=1e-10)
        assert ours.weights is got and (t == 0 or not torch.equal(got, before))


def test_closed_forms_by_hand():
    loss = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    torch.testing.assert_close(GeometricMean(3).update(None, loss), 2.0 / (3 * loss))  # (1·2·4)^(1/3) = 2
    w = STCH(3, mu=1.0).update(None, loss)
    torch.testing.assert_close(w, torch.softmax(loss / 3, -1) / 3)
    # PBI on the preference line: only the d1 term, d = r / ‖r‖
    torch.testing.assert_close(PBI(3, theta=7.0, pref_vector=[1, 2, 4]).update(None, loss), loss / loss.norm(), atol=1e-5, rtol=0)
    # COSMOS with losses ∝ r: cos(r, l) = 1 is a maximum, its gradient vanishes: λ = r
    torch.testing.assert_close(COSMOS(3, lambda_=3.0, pref_vector=[0.5, 1, 2]).update(None, loss), torch.tensor([0.5, 1, 2], dtype=F64))


@pytest.mark.parametrize("kw", [{}, {"lr": 0.1, "weight_decay": 0.0}, {"lr": 0.05, "min_losses": [0.01, 0.0, 0.02, 0.0]}])
def test_famo_matches_torchjd_fed_the_next_steps_losses(kw):
    from torchjd.scalarization import FAMO as JDFAMO

    k = 4
    jd_kw = {key: torch.tensor(v, dtype=F64) if key == "min_losses" else v for key, v in kw.items()}
    ref = JDFAMO(k, **jd_kw).double()
    ours = FAMO(k, **kw)
    torch.testing.assert_close(ours.weights, torch.full((k,), 0.25, dtype=F64))
    for t, loss in enumerate(_losses(k, 25, seed=11)):
        if t > 0:
            ref.update(loss)  # torchjd: "after" losses of the previous step's batch
        expected = _dS(ref, loss)  # also records loss as torchjd's "before"
        got = ours.update(None, loss)
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(ours.logits, ref._w.detach(), atol=1e-10, rtol=1e-8)
    assert float(ours.logits.abs().max()) > 1e-3  # the logits did move
    torch.testing.assert_close(got.sum(), torch.tensor(1.0, dtype=F64))


def test_imtl_l_matches_torchjd_with_adam_and_equals_uncertainty_weighting():
    from torchjd.scalarization import IMTLL as JDIMTLL

    k = 3
    ref = JDIMTLL(k).double()
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    ours, uw = IMTLL(k, lr=0.05), make_weighting("uncertainty", k, lr=0.05)
    for loss in _losses(k, 30, seed=3):
        leaf = loss.clone().requires_grad_(True)
        s = ref(leaf)
        expected_now, _ = torch.autograd.grad(s, [leaf, ref.log_scale], retain_graph=True)
        torch.testing.assert_close(ours.weights, expected_now, atol=1e-10, rtol=1e-8)
        opt.zero_grad()
        s.backward()
        opt.step()
        ours.update(None, loss)
        torch.testing.assert_close(ours.log_scales, ref.log_scale.detach(), atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(uw.update(None, loss), ours.weights, atol=1e-12, rtol=1e-12)


def test_rlw_draws_torchjds_weights_and_resumes():
    from torchjd.scalarization import Random

    k, seed = 5, 1234
    ours = RandomLossWeighting(k, seed=seed)
    torch.manual_seed(seed)
    ref = Random()
    loss = torch.ones(k, dtype=F64)
    seen = []
    for _ in range(6):
        torch.testing.assert_close(ours.weights, _dS(ref, loss))
        seen.append(ours.weights)
        ours.update(None, loss)
    assert all(float(w.min()) > 0 and abs(float(w.sum()) - 1) < 1e-12 for w in seen)
    assert len({tuple(w.tolist()) for w in seen}) == len(seen)
    other = RandomLossWeighting(k, seed=0)
    other.load_state_dict(ours.state_dict())
    torch.testing.assert_close(other.update(None, loss), ours.update(None, loss), atol=0, rtol=0)


@pytest.mark.parametrize("name", sorted(LOSS_BASED))
def test_loss_based_in_soup_write_grad_directly_with_weights_known_before(name):
    toy = Toy(31)
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting=name)
    assert not soup.buffered and not soup.levels[0].weighting.needs_gram
    gs, _ = toy.reference()
    for _ in range(3):
        w = soup.levels[0].weighting
        lam = w.weights.clone()
        soup.zero_grad()
        soup.begin_step(0.0)
        toy.feed(soup)
        with NoHostSync():
            stats = soup.step(0.0)
        expected = sum(lam[i] * (gs[n, 0] + gs[n, 1]) / 2 for i, n in enumerate(OBJ))
        torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats["lambda/1"], lam)
        assert w.weights.dtype == torch.float32 and w.weights.shape == (len(OBJ),)
    if name in ("stch", "geometric_mean", "cosmos", "pbi"):
        fresh = make_weighting(name, len(OBJ))
        torch.testing.assert_close(w.weights, fresh.update(None, stats["losses"].double()).float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(set(LOSS_BASED) - {"rlw"}))  # RLW ignores the losses
def test_non_finite_losses_change_nothing(name):
    w = make_weighting(name, 3)
    good = torch.tensor([0.5, 2.0, 3.0], dtype=F64)
    w.update(None, good)
    w.update(None, good * 0.9)
    before = w.state_dict()
    w.update(None, torch.tensor([float("nan"), 1.0, 1.0], dtype=F64))
    after = w.state_dict()
    if name in ("uncertainty", "imtl_l", "dwa"):  # per-objective: only the bad one is frozen
        assert torch.isfinite(w.weights).all()
        return
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(after[key], value, atol=0, rtol=0)


def test_famo_and_geometric_mean_reject_non_positive_losses():
    gm = GeometricMean(2)
    lam = gm.update(None, torch.tensor([1.0, 2.0], dtype=F64))
    assert torch.equal(gm.update(None, torch.tensor([0.0, 2.0], dtype=F64)), lam)
    famo = FAMO(2, min_losses=[0.5, 0.0])
    lam = famo.update(None, torch.tensor([1.0, 2.0], dtype=F64))
    assert torch.equal(famo.update(None, torch.tensor([0.4, 2.0], dtype=F64)), lam)  # below its lower bound


def test_famo_checkpoint_resumes_exactly_and_moves_device_dtype():
    seq = _losses(3, 12, seed=8)
    a = FAMO(3, lr=0.1)
    for loss in seq[:6]:
        a.update(None, loss)
    b = FAMO(3, lr=0.1)
    b.load_state_dict(a.state_dict())
    for loss in seq[6:]:
        torch.testing.assert_close(b.update(None, loss), a.update(None, loss), atol=0, rtol=0)
    c = FAMO(3, lr=0.1).to("cpu", torch.float32)
    c.load_state_dict(a.state_dict())  # keeps its own dtype
    assert c.logits.dtype == torch.float32 and c.weights.dtype == torch.float32
    torch.testing.assert_close(c.logits, a.logits.float())


@pytest.mark.parametrize("name,kw,match", [
    ("stch", {"mu": 0}, "positive"), ("stch", {"pref_vector": [1, 2]}, "3 finite numbers"),
    ("cosmos", {"lambda_": -1}, "non-negative"), ("pbi", {"pref_vector": [0, 0, 0]}, "not all zero"),
    ("famo", {"lr": -1}, "non-negative"), ("famo", {"min_losses": [0, 0]}, "3 finite numbers"),
    ("rlw", {"seed": -3}, "non-negative integer"), ("geometric_mean", {"mu": 1}, "bad options"),
])
def test_bad_options_are_one_clear_error(name, kw, match):
    with pytest.raises(ValueError, match=match):
        make_weighting(name, 3, **kw)
    with pytest.raises(ValueError, match="losses have shape"):
        make_weighting(name, 3).update(None, torch.ones(4))
