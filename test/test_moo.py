"""Tests of the MOO core (osoup.moo): every formula against a direct computation."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from osoup.moo import (
    METHODS,
    Level,
    MeanWeighting,
    MoDo,
    PenaltySchedule,
    Soup,
    StaticWeighting,
    entropy,
    make_soup,
    parse_levels,
    project_simplex,
    split_optimizers,
)

torch.set_default_dtype(torch.float32)


# --------------------------------------------------------------------------- helpers
def brute_projection(v: torch.Tensor) -> torch.Tensor:
    """Projection of a 1-D v onto the simplex by enumerating every support set.

    For a support S the KKT point is x_S = v_S - (Σv_S - 1)/|S|, 0 elsewhere; the projection is
    the feasible candidate nearest to v (it is one of them, and all of them are feasible).
    """
    k = v.numel()
    best, best_d = None, math.inf
    for r in range(1, k + 1):
        for support in itertools.combinations(range(k), r):
            s = list(support)
            x = torch.zeros_like(v)
            x[s] = v[s] - (v[s].sum() - 1) / r
            if (x >= -1e-12).all():
                d = float(((x - v) ** 2).sum())
                if d < best_d:
                    best, best_d = x.clamp(min=0), d
    return best


class NoHostSync(TorchDispatchMode):
    """Fail on any op that needs a value or a data-dependent shape on the host."""

    FORBIDDEN = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.FORBIDDEN:
            raise AssertionError(f"host synchronisation: aten.{name}")
        if name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
        ):
            raise AssertionError("host synchronisation: boolean-mask indexing")
        return func(*args, **(kwargs or {}))


OBJ = ["asr_en", "asr_fr", "st_fr", "st_de", "ssl"]


class Toy:
    """Shared tanh(Linear(5, 4)) backbone; a Linear(4, 1) head per supervised objective;
    the SSL objective has no head. Each objective has its own data for half 0 and half 1."""

    def __init__(self, seed: int = 0, objectives: list[str] = OBJ, ssl: str = "ssl") -> None:
        torch.manual_seed(seed)
        self.ssl = ssl
        self.objectives = list(objectives)
        self.backbone = torch.nn.Linear(5, 4)
        self.head_mods = {n: torch.nn.Linear(4, 1) for n in objectives if n != ssl}
        g = torch.Generator().manual_seed(seed + 1)
        self.data = {
            (n, h): (torch.randn(6, 5, generator=g), torch.randn(6, 1, generator=g) * 3)
            for n in objectives
            for h in (0, 1)
        }

    @property
    def shared(self) -> list[torch.nn.Parameter]:
        return list(self.backbone.parameters())

    @property
    def heads(self) -> dict[str, list[torch.nn.Parameter]]:
        return {n: list(m.parameters()) for n, m in self.head_mods.items()}

    def loss(self, name: str, half: int) -> torch.Tensor:
        x, y = self.data[name, half]
        z = torch.tanh(self.backbone(x))
        if name == self.ssl:
            return ((z - 0.5) ** 2).mean()
        return ((self.head_mods[name](z) - y) ** 2).mean()

    def reference(self) -> tuple[dict, dict]:
        """Per (name, half): flat gradient w.r.t. the backbone, and w.r.t. the objective's head."""
        gs, gh = {}, {}
        for n in self.objectives:
            head = self.heads.get(n, [])
            for h in (0, 1):
                grads = torch.autograd.grad(self.loss(n, h), self.shared + head)
                gs[n, h] = torch.cat([g.flatten() for g in grads[: len(self.shared)]])
                gh[n, h] = [g.clone() for g in grads[len(self.shared) :]]
        return gs, gh

    def feed(self, soup: Soup) -> None:
        for n in soup.objectives:
            for h in (0, 1):
                soup.backward(n, h, self.loss(n, h))

    def shared_grad(self) -> torch.Tensor:
        return torch.cat([p.grad.flatten() for p in self.shared])


def modo_ref(lam: torch.Tensor, g12: torch.Tensor, gamma: float, rho: float = 0.0) -> torch.Tensor:
    return brute_projection(lam - gamma * (g12 @ lam + rho * lam))


# --------------------------------------------------------------------------- simplex
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_projection_matches_brute_force_batched(k):
    g = torch.Generator().manual_seed(k)
    v = torch.cat(
        [
            torch.randn(40, k, generator=g, dtype=torch.float64) * 2,
            torch.rand(10, k, generator=g, dtype=torch.float64) * 50 - 25,
            torch.full((2, k), 1.0 / k, dtype=torch.float64),  # already in the simplex
            torch.full((2, k), 7.0, dtype=torch.float64),  # all tied
            torch.randint(-2, 3, (10, k), generator=g).to(torch.float64),  # many ties
        ]
    )
    x = project_simplex(v.view(-1, 2, k)).view(-1, k)  # two leading batch dims
    assert x.dtype == torch.float64 and x.shape == v.shape
    for i in range(v.shape[0]):
        torch.testing.assert_close(x[i], brute_projection(v[i]), atol=1e-10, rtol=0)
    # Points already in the simplex are fixed points.
    inside = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((20,))
    torch.testing.assert_close(project_simplex(inside), inside, atol=1e-12, rtol=0)


def test_projection_kkt_and_dtype_float32():
    v = torch.randn(200, 7) * 3
    x = project_simplex(v)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.sum(-1), torch.ones(200), atol=1e-5, rtol=0)
    assert (x >= 0).all()
    # KKT: x = max(v - τ, 0) with one τ per row; on the support v - x = τ, off it v <= τ.
    tau = ((v - x) * (x > 0)).sum(-1) / (x > 0).sum(-1)
    on = x > 0
    torch.testing.assert_close((v - x)[on], tau.unsqueeze(-1).expand_as(v)[on], atol=1e-5, rtol=0)
    assert (v[~on] <= tau.unsqueeze(-1).expand_as(v)[~on] + 1e-5).all()
    with pytest.raises(ValueError):
        project_simplex(torch.zeros(3, 0))
    with pytest.raises(TypeError):
        project_simplex(torch.tensor([1, 2]))


def test_no_host_sync_guard_catches_item_and_masks():
    with pytest.raises(AssertionError, match="host synchronisation"):
        with NoHostSync():
            torch.randn(3).sum().item()
    with pytest.raises(AssertionError, match="host synchronisation"):
        with NoHostSync():
            v = torch.randn(5)
            v[v > 0]


def test_projection_and_modo_do_not_sync():
    v = torch.randn(8, 5)
    m = MoDo(5, gamma=0.3, rho=0.1, normalize="mean-diag")
    with NoHostSync():
        project_simplex(v)
        m.update(torch.randn(5, 5), None)
        entropy(m.weights)


# --------------------------------------------------------------------------- weighting
def test_modo_one_step_matches_formula():
    g = torch.Generator().manual_seed(3)
    j1, j2 = torch.randn(4, 30, generator=g, dtype=torch.float64), torch.randn(4, 30, generator=g, dtype=torch.float64)
    g12 = j1 @ j2.T
    for rho in (0.0, 0.2):
        m = MoDo(4, gamma=0.05, rho=rho)
        lam = m.update(g12, None)
        torch.testing.assert_close(lam, modo_ref(torch.full((4,), 0.25, dtype=torch.float64), g12, 0.05, rho))
        assert m.weights is lam  # returns the NEW λ and keeps it
    m = MoDo(4, gamma=0.05, normalize="mean-diag")
    lam = m.update(g12, None)
    scale = g12.diagonal().abs().mean()
    torch.testing.assert_close(lam, modo_ref(torch.full((4,), 0.25, dtype=torch.float64), g12 / scale, 0.05))


def test_modo_equals_torchjd_over_many_steps():
    from torchjd.aggregation import MoDoWeighting

    g = torch.Generator().manual_seed(11)
    for k, gamma, rho in [(3, 0.1, 0.0), (5, 0.02, 0.1), (2, 0.5, 0.3)]:
        ours, ref = MoDo(k, gamma=gamma, rho=rho), MoDoWeighting(gamma=gamma, rho=rho)
        moved = 0.0
        for _ in range(150):
            j1 = torch.randn(k, 20, generator=g, dtype=torch.float64)
            j2 = j1 + 0.5 * torch.randn(k, 20, generator=g, dtype=torch.float64)
            g12 = j1 @ j2.T
            a, b = ours.update(g12, None), ref(g12)
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
            moved = max(moved, float((a - 1.0 / k).abs().max()))
        assert moved > 0.05  # λ really travelled away from uniform


def test_modo_keeps_lambda_across_dtype_move_and_state_dict():
    g = torch.Generator().manual_seed(5)
    m = MoDo(3, gamma=0.2)
    for _ in range(4):
        m.update(torch.randn(3, 3, generator=g), None)
    before = m.weights.clone()
    assert not torch.allclose(before, torch.full((3,), 1 / 3))
    g64 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    after = m.update(g64, None)
    assert after.dtype == torch.float64
    torch.testing.assert_close(after, modo_ref(before.double(), g64, 0.2), atol=1e-6, rtol=0)

    sd = m.state_dict()
    m2 = MoDo(3, gamma=0.2)
    m2.load_state_dict(sd)
    torch.testing.assert_close(m2.weights, after, atol=1e-12, rtol=0)
    g2 = torch.randn(3, 3, generator=g)
    torch.testing.assert_close(m2.update(g2, None), m.update(g2.double(), None).float(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        MoDo(4).load_state_dict(sd)
    with pytest.raises(ValueError):
        m.update(None, None)
    with pytest.raises(ValueError):
        MoDo(3, gamma=0.0)
    with pytest.raises(ValueError):
        MoDo(3, normalize="max")


def test_static_mean_and_entropy():
    s = StaticWeighting([0.18, 0.19, 0.27, 0.16, 0.20])
    assert not s.needs_gram and MoDo(2).needs_gram
    torch.testing.assert_close(s.update(None, None), torch.tensor([0.18, 0.19, 0.27, 0.16, 0.20], dtype=torch.float64))
    torch.testing.assert_close(MeanWeighting(4).to(dtype=torch.float32).update(None, None), torch.full((4,), 0.25))
    with pytest.raises(ValueError):
        StaticWeighting([0.5, -0.1])
    lam = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(entropy(lam), torch.tensor([math.log(2), 0.0]))


# --------------------------------------------------------------------------- schedule
def test_penalty_schedule_values_cap_and_scaling():
    s = PenaltySchedule(0.1, 0.02, 1.5)
    assert s.value(0) == pytest.approx(0.1)
    assert s.value(2.5) == pytest.approx(0.15)  # fractional epoch
    assert s.value(70) == pytest.approx(1.5)
    assert s.value(500) == 1.5
    assert s.epochs_to_cap() == pytest.approx(70)
    vc = PenaltySchedule(0.0, 0.02, 1.5)
    assert vc.epochs_to_cap() / 200 == pytest.approx(0.375)  # the paper: cap at 75 of 200 epochs
    short = vc.scaled_to(20)
    assert short.rate == pytest.approx(0.2)
    assert short.epochs_to_cap() / 20 == pytest.approx(0.375)
    assert short.value(7.5) == pytest.approx(1.5) and short.value(3.75) == pytest.approx(0.75)
    assert vc.scaled_to(400, paper_epochs=200).rate == pytest.approx(0.01)
    for bad in [(0.0, -0.1, 1.0), (2.0, 0.1, 1.0), (math.nan, 0.1, 1.0)]:
        with pytest.raises(ValueError):
            PenaltySchedule(*bad)
    with pytest.raises(ValueError):
        s.value(-1)
    with pytest.raises(ValueError):
        s.scaled_to(0)


# --------------------------------------------------------------------------- levels
LOBJ = ["asr_en", "asr_fr", "asr_zh", "st_fr", "ssl"]


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("asr>st>ssl", [["asr_en", "asr_fr", "asr_zh"], ["st_fr"], ["ssl"]]),
        ("st > asr > ssl", [["st_fr"], ["asr_en", "asr_fr", "asr_zh"], ["ssl"]]),
        ("en,fr>zh>ssl", [["asr_en", "asr_fr", "st_fr"], ["asr_zh"], ["ssl"]]),
        ("zh>en>fr>ssl", [["asr_zh"], ["asr_en"], ["asr_fr", "st_fr"], ["ssl"]]),
        ("asr_fr,asr_en>st,asr_zh>ssl", [["asr_en", "asr_fr"], ["asr_zh", "st_fr"], ["ssl"]]),
        ("asr_en>asr_fr>asr_zh>st_fr>ssl", [["asr_en"], ["asr_fr"], ["asr_zh"], ["st_fr"], ["ssl"]]),
    ],
)
def test_parse_levels_good(spec, expected):
    assert parse_levels(spec, LOBJ) == expected


def test_parse_levels_without_ssl():
    assert parse_levels("st>asr", ["asr_en", "st_fr"], ssl=None) == [["st_fr"], ["asr_en"]]


@pytest.mark.parametrize(
    "spec,pattern",
    [
        ("asr>st>ssl>de", r"unknown token 'de'"),
        ("asr>st,fr>ssl", r"token 'fr' places objective 'asr_fr' a second time"),
        ("asr>ssl", r"leaves out the objectives \['st_fr'\]"),
        ("asr>ssl>st", r"'ssl'.*must be alone in the last group"),
        ("asr,st,ssl", r"'ssl'.*must be alone in the last group"),
        ("asr>>st>ssl", r"empty group 2"),
        ("asr>st,>ssl", r"empty token in group 2"),
        ("", r"empty spec"),
    ],
)
def test_parse_levels_bad(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_levels(spec, LOBJ)


# --------------------------------------------------------------------------- soup
def test_vm_update_matches_closed_form_and_theta_moves():
    toy = Toy(0)
    gamma, epoch, lr = 0.3, 3.5, 0.1
    soup = make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="asr>st>ssl", modo={"gamma": gamma})
    assert soup.objectives == ["asr_en", "asr_fr", "st_fr", "st_de", "ssl"]
    opt = torch.optim.SGD(toy.shared, lr=lr)
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in toy.shared)

    gs, gh = toy.reference()
    levels = [["asr_en", "asr_fr"], ["st_fr", "st_de"], ["ssl"]]
    eta1, eta2 = 0.1 + 0.02 * epoch, 0.0 + 0.02 * epoch
    coeffs = [1.0, eta1, eta1 * eta2]
    expected = torch.zeros_like(gs["ssl", 0])
    lams = []
    for lv, c in zip(levels, coeffs):
        g1 = torch.stack([gs[n, 0] for n in lv])
        g2 = torch.stack([gs[n, 1] for n in lv])
        k = len(lv)
        lam = modo_ref(torch.full((k,), 1.0 / k), g1 @ g2.T, gamma) if k > 1 else torch.ones(1)
        lams.append(lam)
        expected += c * (lam @ (g1 + g2)) / 2

    theta0 = torch.cat([p.detach().flatten() for p in toy.shared]).clone()
    toy.feed(soup)
    stats = soup.step(epoch)
    got = toy.shared_grad()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats["lambda/1"], lams[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(stats["lambda/2"], lams[1], atol=1e-6, rtol=0)
    assert stats["eta/1"] == pytest.approx(eta1) and stats["eta/2"] == pytest.approx(eta2)
    assert float(stats["weight/st_de"]) == pytest.approx(eta1 * float(lams[1][1]), rel=1e-5)
    assert float(stats["weight/ssl"]) == pytest.approx(eta1 * eta2, rel=1e-5)
    assert not torch.allclose(lams[0], torch.full((2,), 0.5), atol=1e-3)  # MoDo actually moved λ

    # (b) θ moves by exactly -lr × combined direction although .grad started as None.
    opt.step()
    theta1 = torch.cat([p.detach().flatten() for p in toy.shared])
    torch.testing.assert_close(theta1, theta0 - lr * expected, atol=1e-6, rtol=0)

    # λ is carried over: the next step starts from the previous λ, not from uniform.
    opt.zero_grad(set_to_none=True)
    soup.zero_grad()
    gs, _ = toy.reference()
    g1 = torch.stack([gs[n, 0] for n in levels[0]])
    g2 = torch.stack([gs[n, 1] for n in levels[0]])
    toy.feed(soup)
    stats = soup.step(epoch + 0.1)
    torch.testing.assert_close(stats["lambda/1"], modo_ref(lams[0], g1 @ g2.T, gamma), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["vm", "joint"])
def test_heads_get_plain_mean_gradient(method):
    toy = Toy(1)
    kwargs = {"levels": "st>asr>ssl", "modo": {"gamma": 0.5}} if method == "vm" else {}
    soup = make_soup(method, toy.shared, toy.heads, OBJ, "ssl", **kwargs)
    _, gh = toy.reference()
    toy.feed(soup)
    soup.step(10.0)  # η far from 1: heads must not see it
    for n, params in toy.heads.items():
        for j, p in enumerate(params):
            torch.testing.assert_close(p.grad, 0.5 * (gh[n, 0][j] + gh[n, 1][j]), atol=1e-6, rtol=0)


def test_vc_gramian_includes_penalty_terms():
    toy = Toy(2)
    gamma, epoch = 0.02, 30.0
    eta = min(0.02 * epoch, 1.5)
    soup = make_soup("vc", toy.shared, toy.heads, OBJ, "ssl", modo={"gamma": gamma})
    assert soup.objectives[-1] == "ssl" and soup.buffered
    gs, _ = toy.reference()
    sup = OBJ[:-1]
    r1 = torch.stack([gs[n, 0] + eta * gs["ssl", 0] for n in sup])
    r2 = torch.stack([gs[n, 1] + eta * gs["ssl", 1] for n in sup])
    uniform = torch.full((4,), 0.25)
    lam = modo_ref(uniform, r1 @ r2.T, gamma)
    plain = torch.stack([gs[n, 0] for n in sup]) @ torch.stack([gs[n, 1] for n in sup]).T
    lam_plain = modo_ref(uniform, plain, gamma)
    assert not torch.allclose(lam, lam_plain, atol=1e-3)  # the η terms matter here
    g_sup = torch.stack([gs[n, 0] + gs[n, 1] for n in sup]) / 2
    expected = lam @ g_sup + eta * (gs["ssl", 0] + gs["ssl", 1]) / 2  # eq. 15

    toy.feed(soup)
    stats = soup.step(epoch)
    torch.testing.assert_close(stats["lambda/1"], lam, atol=1e-6, rtol=0)
    torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-5, rtol=1e-5)
    assert stats["eta/1"] == pytest.approx(eta)


def test_gram_params_all_adds_head_inner_products():
    objectives = ["asr_en", "asr_fr", "st_fr"]
    toy = Toy(3, objectives=objectives, ssl="ssl")
    gamma = 0.2
    soup = make_soup("vs", toy.shared, toy.heads, objectives, None, modo={"gamma": gamma}, gram_params="all")
    gs, gh = toy.reference()
    # Rows over ALL parameters Θ = [θ; φ_1; φ_2; φ_3]: each head sits in its own block.
    sizes = [sum(p.numel() for p in toy.heads[n]) for n in objectives]

    def row(n, h):
        blocks = [torch.zeros(s) for s in sizes]
        blocks[objectives.index(n)] = torch.cat([g.flatten() for g in gh[n, h]])
        return torch.cat([gs[n, h]] + blocks)

    j1 = torch.stack([row(n, 0) for n in objectives])
    j2 = torch.stack([row(n, 1) for n in objectives])
    lam = modo_ref(torch.full((3,), 1 / 3), j1 @ j2.T, gamma)
    toy.feed(soup)
    stats = soup.step(0.0)
    torch.testing.assert_close(stats["lambda/1"], lam, atol=1e-6, rtol=0)


class _GramStatic(StaticWeighting):
    """Fixed weights that nevertheless ask for the Gramian: forces the buffered path."""

    needs_gram = True


def test_fast_path_equals_buffered_path_and_closed_form():
    epoch = 12.0
    eta = 0.02 * epoch
    results = []
    for buffered in (False, True):
        toy = Toy(4)
        wk = _GramStatic if buffered else StaticWeighting
        levels = [
            Level(OBJ[:-1], wk([0.25] * 4)),
            Level(["ssl"], wk([1.0]), PenaltySchedule(0.0, 0.02, 1.5)),
        ]
        soup = Soup(toy.shared, toy.heads, levels)
        assert soup.buffered == buffered
        for p in toy.shared:  # stale gradient: step() must replace it, not add to it
            p.grad = torch.full_like(p, 123.0)
        toy.feed(soup)
        soup.step(epoch)
        results.append(toy.shared_grad().clone())
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-6)

    toy = Toy(4)
    joint = make_soup("joint", toy.shared, toy.heads, OBJ, "ssl")
    assert not joint.buffered
    gs, _ = toy.reference()
    expected = sum((gs[n, 0] + gs[n, 1]) / 2 for n in OBJ[:-1]) / 4 + eta * (gs["ssl", 0] + gs["ssl", 1]) / 2
    toy.feed(joint)
    stats = joint.step(epoch)
    torch.testing.assert_close(toy.shared_grad(), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(results[0], expected, atol=1e-6, rtol=1e-6)
    assert float(stats["weight/ssl"]) == pytest.approx(eta)

    toy = Toy(4)
    mean = make_soup("mean", toy.shared, toy.heads, OBJ[:-1], None)
    toy.feed(mean)
    mean.step(0.0)
    torch.testing.assert_close(toy.shared_grad(), sum((gs[n, 0] + gs[n, 1]) / 2 for n in OBJ[:-1]) / 4, atol=1e-6, rtol=1e-6)


def test_static_and_ssl_methods():
    toy = Toy(5)
    mu = {"asr_en": 0.18, "asr_fr": 0.19, "st_fr": 0.27, "st_de": 0.36}
    soup = make_soup("static", toy.shared, {k: v for k, v in toy.heads.items()}, list(mu), "ssl", static_weights=mu)
    gs, _ = toy.reference()
    toy.feed(soup)
    soup.step(1.0)
    torch.testing.assert_close(toy.shared_grad(), sum(mu[n] * (gs[n, 0] + gs[n, 1]) / 2 for n in mu), atol=1e-6, rtol=1e-6)

    soup = make_soup("ssl", toy.shared, {}, ["ssl"], "ssl")
    soup.zero_grad()
    toy.feed(soup)
    soup.step(0.0)
    torch.testing.assert_close(toy.shared_grad(), (gs["ssl", 0] + gs["ssl", 1]) / 2, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", ["vs", "vc", "joint"])
def test_step_does_not_sync(method):
    toy = Toy(6)
    soup = make_soup(method, toy.shared, toy.heads, OBJ, "ssl")
    toy.feed(soup)
    with NoHostSync():
        soup.step(2.5)
        soup.weights_now(2.5)


def test_split_optimizers_head_step_leaves_theta_identical():
    toy = Toy(7)
    soup = make_soup("vs", toy.shared, toy.heads, OBJ, "ssl")
    opt_s, opt_h = split_optimizers(toy.shared, toy.heads, lr_shared=1e-2, lr_heads=1e-2, weight_decay=0.1)
    for _ in range(3):  # build up momentum in both
        opt_s.zero_grad(), opt_h.zero_grad()
        toy.feed(soup)
        soup.step(0.0)
        opt_s.step(), opt_h.step()
    theta = [p.detach().clone() for p in toy.shared]
    head0 = [p.detach().clone() for p in toy.heads["asr_en"]]
    for _ in range(4):  # head-only steps; θ even keeps a non-zero .grad meanwhile
        toy.feed(soup)
        soup.step(0.0)
        opt_h.step()
        opt_h.zero_grad()
    assert all(torch.equal(a, p) for a, p in zip(theta, toy.shared))
    assert not all(torch.equal(a, p) for a, p in zip(head0, toy.heads["asr_en"]))

    # The bug this prevents: one AdamW over θ and heads moves θ with a zero θ-gradient.
    one = torch.optim.AdamW(toy.shared + [p for ps in toy.heads.values() for p in ps], lr=1e-2, weight_decay=0.1)
    for p in toy.shared:
        p.grad = torch.zeros_like(p)
    one.step()
    assert not all(torch.equal(a, p) for a, p in zip(theta, toy.shared))
    with pytest.raises(ValueError, match="twice"):
        split_optimizers(toy.shared, toy.shared[:1], 1e-3, 1e-3)


def test_vs_converges_to_pareto_stationary_point():
    # Three conflicting quadratics l_i(θ) = ½‖θ - a_i‖²: the Pareto set is the triangle a_1a_2a_3.
    anchors = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    theta = torch.nn.Parameter(torch.tensor([9.0, 7.0]))
    names = ["t_a", "t_b", "t_c"]
    soup = make_soup("vs", [theta], {}, names, None, modo={"gamma": 0.05})
    opt = torch.optim.SGD([theta], lr=0.05)
    g = torch.Generator().manual_seed(0)

    def losses():
        return torch.stack([0.5 * ((theta.detach() - a) ** 2).sum() for a in anchors])

    start = losses()
    for _ in range(400):
        opt.zero_grad()
        for i, n in enumerate(names):
            for h in (0, 1):
                noise = 0.05 * torch.randn(2, generator=g)
                soup.backward(n, h, 0.5 * ((theta - anchors[i] - noise) ** 2).sum())
        soup.step(0.0)
        opt.step()
    end = losses()
    assert (end < start).all()
    # Pareto stationarity: min_λ∈Δ ‖Σ λ_i ∇l_i‖ = distance from θ to the triangle, ~0.
    lam_grid = torch.distributions.Dirichlet(torch.ones(3)).sample((20000,))
    dist = ((theta.detach() - lam_grid @ anchors).norm(dim=-1)).min()
    assert dist < 0.1, f"θ={theta.detach().tolist()} is {float(dist):.3f} from the Pareto set"


def test_soup_errors_and_state_dict():
    toy = Toy(8)
    soup = make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="asr>st>ssl", modo={"gamma": 0.3})
    for n in OBJ:
        soup.backward(n, 0, toy.loss(n, 0))
    for n in OBJ[:-1]:
        soup.backward(n, 1, toy.loss(n, 1))
    with pytest.raises(ValueError, match=r"'ssl' half 1"):
        soup.step(0.0)
    soup.backward("ssl", 1, toy.loss("ssl", 1))
    soup.step(0.0)
    with pytest.raises(ValueError, match="unknown objective 'asr_de'"):
        soup.backward("asr_de", 0, toy.loss("asr_en", 0))
    with pytest.raises(ValueError, match="half must be 0 or 1"):
        soup.backward("asr_en", 2, toy.loss("asr_en", 0))

    other = make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="asr>st>ssl", modo={"gamma": 0.3})
    other.load_state_dict(soup.state_dict())
    for a, b in zip(soup.levels, other.levels):
        torch.testing.assert_close(a.weighting.weights, b.weighting.weights)
    usa = make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="st>asr>ssl")
    with pytest.raises(ValueError, match="levels"):
        usa.load_state_dict(soup.state_dict())

    with pytest.raises(ValueError, match="unknown method 'pcgrad'; valid methods: " + ", ".join(METHODS)):
        make_soup("pcgrad", toy.shared, toy.heads, OBJ, "ssl")
    with pytest.raises(ValueError, match="missing"):
        make_soup("static", toy.shared, toy.heads, OBJ, "ssl", static_weights={"asr_en": 1.0})
    with pytest.raises(ValueError, match="needs 2 penalty"):
        make_soup("vm", toy.shared, toy.heads, OBJ, "ssl", levels="asr>st>ssl", penalties=[PenaltySchedule(0, 0, 0)])
    with pytest.raises(ValueError, match="needs the SSL objective"):
        make_soup("vc", toy.shared, toy.heads, OBJ[:-1], "ssl")
    with pytest.raises(ValueError, match="also listed"):
        Soup(toy.shared, {"asr_en": toy.shared[:1]}, [Level(["asr_en"], MeanWeighting(1))])
