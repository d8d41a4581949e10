"""Weighting methods behind the level interface: torchjd wrappers (differential tests against
torchjd itself), loss-based methods (uncertainty, DWA) against their formulas, the registry.
torchjd's scalarizers (FAMO, STCH, ...) are tested in test_moo_scalarizers.py."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from osoup.moo import (
    DWA,
    WEIGHTINGS,
    JDWeighting,
    MissingDependencyError,
    UncertaintyWeighting,
    make_soup,
    make_weighting,
)
from test_moo import OBJ, NoHostSync, Toy

AVAILABLE = ["mgda", "pcgrad", "imtl_g", "aligned_mtl", "gradvac", "sdmgrad", "config", "krum"]
OPTIONAL = {"cagrad": ("cvxpy", "clarabel"), "upgrad": ("qpsolvers", "quadprog"), "nash_mtl": ("cvxpy", "ecos"),
            "fairgrad": ("scipy",), "dualproj": ("qpsolvers", "quadprog")}
EXTRAS = {"cagrad": "cagrad", "upgrad": "quadprog_projector", "nash_mtl": "nash_mtl", "fairgrad": "fairgrad",
          "dualproj": "quadprog_projector"}


def _installed(pkgs) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in pkgs)


def _torchjd(name: str, **kw):
    from torchjd import aggregation as agg

    return {
        "mgda": lambda: agg.MGDAWeighting(**kw),
        "pcgrad": lambda: agg.PCGradWeighting(),
        "imtl_g": lambda: agg.IMTLGWeighting(),
        "aligned_mtl": lambda: agg.AlignedMTLWeighting(**kw),
        "upgrad": lambda: agg.UPGradWeighting(),
        "cagrad": lambda: agg.CAGradWeighting(c=0.5),
        "fairgrad": lambda: agg.FairGradWeighting(**{"alpha": 1.0, **kw}),
        "dualproj": lambda: agg.DualProjWeighting(),
        "gradvac": lambda: agg.GradVacWeighting(**kw),
        "sdmgrad": lambda: agg.SDMGradWeighting(**kw),
        "krum": lambda: agg.KrumWeighting(**{"n_byzantine": 0, **kw}),
        "config": lambda: _ConFIGWeights(agg.ConFIG(**kw)),
    }[name]()


class _ConFIGWeights:
    """torchjd's ConFIG is an aggregator on the matrix: recover its weights from a Gramian by
    aggregating a square factor R (R Rᵀ = gram, R invertible here) and solving d = Rᵀ w."""

    def __init__(self, aggregator) -> None:
        self.aggregator = aggregator

    def __call__(self, gram):
        factor = torch.linalg.cholesky(gram.double())
        return torch.linalg.solve(factor.T, self.aggregator(factor)).to(gram.dtype)


def _random_grams(k: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        j = torch.randn(k, 7, generator=g)
        if i % 3 == 1:  # strongly conflicting pair
            j[1] = -0.8 * j[0] + 0.1 * j[1]
        gram = j @ j.T
        yield (gram + gram.T) / 2  # exactly symmetric, as the engine hands it over


@pytest.mark.parametrize("name,kw", [("mgda", {}), ("mgda", {"epsilon": 1e-5, "max_iters": 300}), ("pcgrad", {}),
                                     ("imtl_g", {}), ("aligned_mtl", {}), ("aligned_mtl", {"scale_mode": "rmse"}),
                                     ("config", {}), ("config", {"pref_vector": [0.1, 0.2, 0.3, 0.4]}),
                                     ("krum", {}), ("krum", {"n_byzantine": 1, "n_selected": 2})])
def test_jd_wrappers_return_torchjds_weights(name, kw):
    ours = make_weighting(name, 4, **kw)
    assert isinstance(ours, JDWeighting) and ours.needs_gram and ours.gram_kind == "mean"
    ref = _torchjd(name, **{key: torch.tensor(v, dtype=torch.float64) if key == "pref_vector" else v for key, v in kw.items()})
    for s, gram in enumerate(_random_grams(4, 12, seed=len(name))):
        torch.manual_seed(s)
        a = ours.update(gram, None)
        torch.manual_seed(s)
        b = ref(gram)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        assert ours.weights is a


def test_jd_initial_weights_are_the_identity_answer():
    assert torch.allclose(make_weighting("pcgrad", 3).weights, torch.ones(3, dtype=torch.float64))
    for n in ("mgda", "imtl_g", "aligned_mtl", "sdmgrad"):
        torch.testing.assert_close(make_weighting(n, 5).weights, torch.full((5,), 0.2, dtype=torch.float64))
    for n in ("gradvac", "config"):
        torch.testing.assert_close(make_weighting(n, 4).weights, torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_optional_solver_methods(name):
    extra = EXTRAS[name]
    if not _installed(OPTIONAL[name]):
        with pytest.raises(MissingDependencyError, match=rf"torchjd\[{extra}\]"):
            make_weighting(name, 3)
        with pytest.raises(ImportError):  # also an ImportError for callers that catch that
            make_soup("vs", [torch.nn.Parameter(torch.zeros(2))], {}, ["a_x", "b_x"], None, weighting=name)
        return
    w = make_weighting(name, 3)  # pragma: no cover - only where the extra is installed
    for gram in _random_grams(3, 4, seed=1):
        got = w.update(gram, None)
        if name != "nash_mtl":
            torch.testing.assert_close(got, _torchjd(name)(gram), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mgda", "pcgrad", "imtl_g", "aligned_mtl", "config", "krum", "gradvac"])
def test_soup_direction_is_torchjds_aggregation_of_mean_gradients(name):
    from torchjd import aggregation as agg

    toy = Toy(21)
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting=name, modo={"gamma": 0.3})
    gs, _ = toy.reference()
    jac = torch.stack([(gs[n, 0] + gs[n, 1]) / 2 for n in OBJ])  # Ḡ, rows = objectives
    aggregator = {"mgda": agg.MGDA, "pcgrad": agg.PCGrad, "imtl_g": agg.IMTLG, "aligned_mtl": agg.AlignedMTL,
                  "config": agg.ConFIG, "krum": lambda: agg.Krum(n_byzantine=0), "gradvac": agg.GradVac}[name]()
    torch.manual_seed(0)
    expected = aggregator(jac)
    weights = _torchjd(name)
    torch.manual_seed(0)
    lam = weights(jac @ jac.T)
    toy.feed(soup)
    torch.manual_seed(0)
    stats = soup.step(0.0)
    torch.testing.assert_close(stats["lambda/1"], lam, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(toy.shared_grad(), lam @ jac, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-5, rtol=1e-4)


def _cross_grams(k: int, n: int, seed: int):
    """Double-sampled G1 G2ᵀ: two noisy halves around a common gradient (not symmetric)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        base = torch.randn(k, 9, generator=g, dtype=torch.float64)
        h1 = base + 0.5 * torch.randn(k, 9, generator=g, dtype=torch.float64)
        h2 = base + 0.5 * torch.randn(k, 9, generator=g, dtype=torch.float64)
        yield h1 @ h2.T


@pytest.mark.parametrize("name,kw", [("gradvac", {}), ("gradvac", {"beta": 0.1}), ("sdmgrad", {}),
                                     ("sdmgrad", {"lambda_": 0.0, "lr": 5.0, "pref_vector": [0.4, 0.3, 0.2, 0.1]})])
def test_stateful_jd_weightings_follow_torchjds_sequence(name, kw):
    ours = make_weighting(name, 4, **kw)
    assert ours.gram_kind == ("cross" if name == "sdmgrad" else "mean")
    ref = _torchjd(name, **{key: torch.tensor(v, dtype=torch.float64) if key == "pref_vector" else v for key, v in kw.items()})
    grams = list(_cross_grams(4, 15, seed=2) if name == "sdmgrad" else _random_grams(4, 15, seed=2))
    for s, gram in enumerate(grams):
        torch.manual_seed(s)  # GradVac's visiting order comes from the global RNG
        got = ours.update(gram.double(), None)
        torch.manual_seed(s)
        torch.testing.assert_close(got, ref(gram.double()), atol=1e-10, rtol=1e-8)
    assert not torch.allclose(got, ours._identity_answer())  # the state did matter


@pytest.mark.parametrize("name,kw", [("gradvac", {}), ("sdmgrad", {"lr": 0.5, "n_iter": 2})])  # few inner steps: λ remembers
def test_stateful_jd_state_is_checkpointed_and_survives_dtype_changes(name, kw):
    grams = list(_cross_grams(3, 12, seed=4) if name == "sdmgrad" else _random_grams(3, 12, seed=4))
    a = make_weighting(name, 3, **kw)
    for s, gram in enumerate(grams[:6]):
        torch.manual_seed(s)
        a.update(gram.double(), None)
    state = a.state_dict()
    assert state["torchjd"] and all(t.dtype == torch.float64 for t in state["torchjd"].values())
    b = make_weighting(name, 3, **kw)
    b.load_state_dict(state)
    c = make_weighting(name, 3, **kw)  # no state restored: differs
    differs = []
    for s, gram in enumerate(grams[6:]):
        torch.manual_seed(100 + s)
        want = a.update(gram.double(), None)
        torch.manual_seed(100 + s)
        got = b.update(gram.float(), None)  # float32 now: torchjd alone would restart its state
        torch.manual_seed(100 + s)
        other = c.update(gram.double(), None)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)
        differs.append(not torch.allclose(other, want))
    assert differs[0]
    fresh = make_weighting(name, 3)
    fresh.load_state_dict({"lambda": state["lambda"]})  # a checkpoint without torchjd state: start afresh
    assert fresh.state_dict()["torchjd"] == {}


def test_config_weights_reproduce_torchjds_aggregation_of_the_matrix():
    from torchjd.aggregation import ConFIG

    g = torch.Generator().manual_seed(7)
    for i in range(10):
        jac = torch.randn(4, 11, generator=g, dtype=torch.float64)
        if i % 3 == 1:
            jac[2] = -0.9 * jac[0] + 0.05 * jac[2]
        if i == 5:
            jac[3] = 0.0  # a zero gradient gets weight 0
        pref = torch.rand(4, generator=g, dtype=torch.float64) + 0.1
        for kw in ({}, {"pref_vector": pref}):
            w = make_weighting("config", 4, **{k: v.tolist() for k, v in kw.items()})
            lam = w.update(jac @ jac.T, None)
            torch.testing.assert_close(lam @ jac, ConFIG(**kw)(jac), atol=1e-9, rtol=1e-7)
            if i == 5:
                assert lam[3] == 0


def test_sdmgrad_in_soup_reads_the_double_sampled_gramian():
    from torchjd.aggregation import SDMGradWeighting

    toy = Toy(24)
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting="sdmgrad")
    gs, _ = toy.reference()
    g1 = torch.stack([gs[n, 0] for n in OBJ]).double()
    g2 = torch.stack([gs[n, 1] for n in OBJ]).double()
    lam = SDMGradWeighting()(g1 @ g2.T)
    toy.feed(soup)
    stats = soup.step(0.0)
    torch.testing.assert_close(stats["lambda/1"], lam.float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(toy.shared_grad(), (lam @ (g1 + g2) / 2).float(), atol=1e-5, rtol=1e-4)


def test_krum_needs_enough_objectives():
    with pytest.raises(ValueError, match="at least n_byzantine \\+ 3 = 4"):
        make_weighting("krum", 3, n_byzantine=1)


def test_vc_and_vm_use_the_chosen_weighting_with_folded_mean_gramian():
    toy = Toy(22)
    epoch = 20.0
    eta = 0.02 * epoch
    soup = make_soup("vc", toy.shared, toy.heads, OBJ, "ssl", weighting="imtl_g")
    assert isinstance(soup.levels[0].weighting, JDWeighting)
    gs, _ = toy.reference()
    mean = {n: (gs[n, 0] + gs[n, 1]) / 2 for n in OBJ}
    rows = torch.stack([mean[n] + eta * mean["ssl"] for n in OBJ[:-1]])
    lam = _torchjd("imtl_g")(rows @ rows.T)
    toy.feed(soup)
    stats = soup.step(epoch)
    torch.testing.assert_close(stats["lambda/1"], lam, atol=1e-5, rtol=1e-4)
    expected = lam @ torch.stack([mean[n] for n in OBJ[:-1]]) + eta * mean["ssl"]
    torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-5, rtol=1e-4)

    vm = make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="asr>st>ssl", weighting="mgda")
    assert [type(lv.weighting).__name__ for lv in vm.levels] == ["JDWeighting", "JDWeighting", "MeanWeighting"]
    with pytest.raises(ValueError, match="unknown weighting 'gradnorm'"):
        make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting="gradnorm")


def test_uncertainty_weighting_adam_step_and_fixed_point():
    w = UncertaintyWeighting(3, lr=0.1)
    s = torch.zeros(3, dtype=torch.float64)
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    for t in range(1, 4):
        grad = 1 - torch.exp(-s) * losses
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        s = s - 0.1 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
        got = w.update(None, losses)
        torch.testing.assert_close(w.log_vars, s)
        torch.testing.assert_close(got, torch.exp(-s))
    for _ in range(3000):
        w.update(None, losses)
    torch.testing.assert_close(w.weights, 1 / losses, rtol=2e-2, atol=0)  # weighted losses → 1
    before = w.state_dict()
    w.update(None, torch.tensor([float("nan"), 1.0, 1.0], dtype=torch.float64))
    assert torch.isfinite(w.log_vars).all() and w.log_vars[0] == before["log_vars"][0]
    w2 = UncertaintyWeighting(3, lr=0.1)
    w2.load_state_dict(w.state_dict())
    torch.testing.assert_close(w2.update(None, losses), w.update(None, losses))


def test_dwa_formula_and_window():
    d = DWA(3, temperature=2.0)
    l1, l2, l3 = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.5, 2.0, 5.0]), torch.tensor([0.4, 1.0, 5.0])
    torch.testing.assert_close(d.update(None, l1), torch.full((3,), 1 / 3, dtype=torch.float64))
    got = d.update(None, l2)  # two windows seen: weights of the next step
    torch.testing.assert_close(got, torch.softmax((l2 / l1).double() / 2.0, -1))
    got = d.update(None, l3)
    torch.testing.assert_close(got, torch.softmax((l3 / l2).double() / 2.0, -1))

    e = DWA(3, temperature=1.0, window=2)
    for loss in (l1, l2, l3):
        e.update(None, loss)
    torch.testing.assert_close(e.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    got = e.update(None, l1)  # windows (l1, l2) and (l3, l1)
    torch.testing.assert_close(got, torch.softmax(((l3 + l1) / (l1 + l2)).double(), -1))
    with pytest.raises(ValueError):
        DWA(3, window=0)


def test_loss_weightings_in_soup_use_the_weights_known_before_the_step():
    toy = Toy(23)
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting="uncertainty", weighting_kwargs={"lr": 0.5})
    assert not soup.buffered  # weights known at backward time: no per-objective buffers
    gs, _ = toy.reference()
    for step in range(3):
        lam = soup.levels[0].weighting.weights.clone()
        soup.zero_grad()
        toy.feed(soup)
        with NoHostSync():
            stats = soup.step(0.0)
        expected = sum(lam[i] * (gs[n, 0] + gs[n, 1]) / 2 for i, n in enumerate(OBJ))
        torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats["lambda/1"], lam)
        assert not torch.equal(soup.levels[0].weighting.weights, lam)  # learnt after the step
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl", weighting="dwa")
    toy.feed(soup)
    with NoHostSync():
        soup.step(0.0)


def test_registry_names_and_errors():
    assert WEIGHTINGS[:12] == ("modo", "mgda", "pcgrad", "cagrad", "imtl_g", "aligned_mtl", "upgrad", "nash_mtl",
                               "uncertainty", "dwa", "static", "mean")  # the original names keep their place
    assert WEIGHTINGS[12:] == ("fairgrad", "gradvac", "sdmgrad", "dualproj", "config", "krum",
                               "famo", "stch", "geometric_mean", "imtl_l", "rlw", "cosmos", "pbi")
    for name in WEIGHTINGS:
        kw = {"weights": [0.2, 0.3, 0.5]} if name == "static" else {}
        try:
            w = make_weighting(name, 3, **kw)
        except MissingDependencyError:
            assert name in OPTIONAL
            continue
        assert w.k == 3 and w.weights.shape == (3,)
    with pytest.raises(ValueError, match="valid weightings"):
        make_weighting("gradnorm", 3)
    with pytest.raises(ValueError, match="per-coordinate gradient matrix"):
        make_weighting("excess_mtl", 3)
    with pytest.raises(ValueError, match="trims each coordinate"):
        make_weighting("trimmed_mean", 3)
    with pytest.raises(ValueError, match="bad options"):
        make_weighting("pcgrad", 3, gamma=0.1)
    with pytest.raises(ValueError, match="bad options"):
        make_weighting("mean", 3, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="3 weights for 2"):
        make_weighting("static", 2, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="positive"):
        make_weighting("dwa", 3, temperature=0)
