"""Layer selection in the Soup engine (osoup.moo.selection): probe steps rank layer groups by
conflict; MOO layers step with λ^{k+1} from their own Gramian, the other layers with λ^k — exactly."""
from __future__ import annotations

import pytest
import torch

from osoup.moo import make_soup
from osoup.moo.selection import count_sketch_into
from test_moo import NoHostSync, modo_ref

OBJ = ["asr_en", "asr_fr", "st_fr", "ssl"]
GROUPS = ["l0", "l1", "l2", "l3"]


class Deep:
    """Four shared tanh(Linear) layers (the layer groups), a Linear head per supervised
    objective, a head-less SSL objective; own data per objective and half."""

    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(5, 4)] + [torch.nn.Linear(4, 4) for _ in range(3)])
        self.head_mods = {n: torch.nn.Linear(4, 1) for n in OBJ if n != "ssl"}
        g = torch.Generator().manual_seed(seed + 1)
        self.data = {(n, h): (torch.randn(8, 5, generator=g), torch.randn(8, 1, generator=g) * 2) for n in OBJ for h in (0, 1)}

    @property
    def shared(self):
        return list(self.layers.parameters())

    @property
    def groups(self):
        return {name: list(layer.parameters()) for name, layer in zip(GROUPS, self.layers)}

    @property
    def heads(self):
        return {n: list(m.parameters()) for n, m in self.head_mods.items()}

    def loss(self, n: str, h: int) -> torch.Tensor:
        x, y = self.data[n, h]
        for layer in self.layers:
            x = torch.tanh(layer(x))
        if n == "ssl":
            return ((x - 0.3) ** 2).mean()
        return ((self.head_mods[n](x) - y) ** 2).mean()

    def grads(self) -> dict:
        """(name, half) -> {group: flat gradient of that group}."""
        out = {}
        for n in OBJ:
            for h in (0, 1):
                gr = torch.autograd.grad(self.loss(n, h), self.shared)
                flat, i = {}, 0
                for name, layer in zip(GROUPS, self.layers):
                    k = len(list(layer.parameters()))
                    flat[name] = torch.cat([g.flatten() for g in gr[i : i + k]])
                    i += k
                out[n, h] = flat
        return out

    def feed(self, soup) -> None:
        for n in soup.objectives:
            for h in (0, 1):
                soup.backward(n, h, self.loss(n, h))

    def grad_of(self, group: str) -> torch.Tensor:
        layer = self.layers[GROUPS.index(group)]
        return torch.cat([p.grad.flatten() for p in layer.parameters()])

    def sgd(self, lr: float = 0.05) -> None:
        with torch.no_grad():
            for p in self.shared:
                p -= lr * p.grad


def probe_rows(soup):
    """The probe buffer of the step being assembled (None: not a probe step, or not yet written)."""
    probe = soup._step.probe
    return None if probe is None else probe.data


def cat(gs, n, h, groups):
    return torch.cat([gs[n, h][g] for g in groups])


def conflict(gs, names, group):
    s = [gs[n, 0][group] + gs[n, 1][group] for n in names]
    cos = [torch.nn.functional.cosine_similarity(s[i], s[j], dim=0) for i in range(len(s)) for j in range(i + 1, len(s))]
    return torch.stack(cos).mean()


def test_vs_selection_probe_and_exact_update_rule():
    net = Deep(0)
    gamma = 0.5
    soup = make_soup("vs", net.shared, net.heads, OBJ, None, modo={"gamma": gamma},
                     layer_groups=net.groups, moo_layers=2, conflict_interval=3)
    assert soup.selected_layers == [] and soup.probe_step
    lam = torch.full((4,), 0.25)
    selected: list[str] = []
    for step in range(7):
        gs = net.grads()
        soup.zero_grad()
        soup.begin_step(0.0)
        net.feed(soup)
        stats = soup.step(0.0)
        if selected:
            j1 = torch.stack([cat(gs, n, 0, selected) for n in OBJ])
            j2 = torch.stack([cat(gs, n, 1, selected) for n in OBJ])
            new = modo_ref(lam, j1 @ j2.T, gamma)
        else:  # step 0: nothing selected yet, λ keeps its value
            new = lam
        torch.testing.assert_close(stats["lambda/1"], new, atol=1e-6, rtol=0)
        for g in GROUPS:
            w = new if g in selected else lam  # MOO layers: λ^{k+1}; the others: λ^k
            expected = sum(w[i] * (gs[n, 0][g] + gs[n, 1][g]) / 2 for i, n in enumerate(OBJ))
            torch.testing.assert_close(net.grad_of(g), expected, atol=1e-6, rtol=1e-5)
        if step % 3 == 0:  # probe: scores from the full per-objective gradients
            scores = torch.stack([conflict(gs, OBJ, g) for g in GROUPS])
            got = torch.stack([stats[f"conflict/{g}"] for g in GROUPS])
            torch.testing.assert_close(got, scores, atol=1e-6, rtol=1e-5)
            selected = [GROUPS[i] for i in sorted(torch.argsort(scores)[:2].tolist())]
        else:
            assert not any(k.startswith("conflict/") for k in stats)
        assert soup.selected_layers == selected
        if step >= 1:
            assert not torch.equal(new, lam)  # λ really moves, so the two rules differ
        lam = new
        net.sgd()
    assert set(selected) != set(GROUPS)


def test_vm_selection_with_and_without_begin_step():
    results = []
    for announce in (True, False):
        net = Deep(1)
        soup = make_soup("vm", net.shared, net.heads, OBJ, "ssl", levels="asr>st>ssl", modo={"gamma": 0.5},
                         layer_groups=net.groups, moo_layers=0.5, conflict_interval=2)
        # Only the asr level needs a Gramian: st (one objective) and ssl go straight to .grad.
        assert soup._buffers.theta.shape[:2] == (2, 2)
        epochs = [3.0, 3.25, 3.5]
        lams = []
        for e in epochs:
            soup.zero_grad()
            if announce:
                soup.begin_step(e)
            lams.append(soup.levels[0].weighting.weights.clone())
            gs = net.grads()
            net.feed(soup)
            stats = soup.step(e)
            net.sgd()
        lam_prev, lam_new = lams[-1], stats["lambda/1"]
        eta1, eta2 = 0.1 + 0.02 * epochs[-1], 0.02 * epochs[-1]
        sel = soup.selected_layers
        assert len(sel) == 2
        for g in GROUPS:
            lam = lam_new if g in sel else lam_prev
            mean = {n: (gs[n, 0][g] + gs[n, 1][g]) / 2 for n in OBJ}
            expected = lam[0] * mean["asr_en"] + lam[1] * mean["asr_fr"] + eta1 * mean["st_fr"] + eta1 * eta2 * mean["ssl"]
            torch.testing.assert_close(net.grad_of(g), expected, atol=1e-6, rtol=1e-5)
        results.append(torch.cat([p.grad.flatten() for p in net.shared]))
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-5)


def test_jd_weighting_with_selection():
    from torchjd.aggregation import IMTLGWeighting

    net = Deep(2)
    soup = make_soup("vs", net.shared, net.heads, OBJ, None, weighting="imtl_g",
                     layer_groups=net.groups, moo_layers=1, conflict_interval=10)
    soup.begin_step(0.0)
    net.feed(soup)
    soup.step(0.0)
    net.sgd()
    (sel,) = soup.selected_layers
    lam_prev = soup.levels[0].weighting.weights.clone()
    gs = net.grads()
    soup.zero_grad()
    soup.begin_step(0.0)
    net.feed(soup)
    stats = soup.step(0.0)  # (torchjd's IMTL-G itself reads v.sum() back to the host)
    mean = torch.stack([(gs[n, 0][sel] + gs[n, 1][sel]) / 2 for n in OBJ])
    gram = mean @ mean.T
    lam = IMTLGWeighting()((gram + gram.T) / 2)
    torch.testing.assert_close(stats["lambda/1"], lam, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net.grad_of(sel), lam @ mean, atol=1e-5, rtol=1e-4)
    for g in GROUPS:
        if g != sel:
            other = torch.stack([(gs[n, 0][g] + gs[n, 1][g]) / 2 for n in OBJ])
            torch.testing.assert_close(net.grad_of(g), lam_prev @ other, atol=1e-6, rtol=1e-5)


def test_full_moo_equals_soup_without_groups_and_buffers_are_where_needed():
    a, b = Deep(3), Deep(3)
    sa = make_soup("vs", a.shared, a.heads, OBJ, None, modo={"gamma": 0.4})
    sb = make_soup("vs", b.shared, b.heads, OBJ, None, modo={"gamma": 0.4}, layer_groups=b.groups)
    assert sb.selected_layers == GROUPS and not sb.probe_step
    for _ in range(3):
        for net, soup in ((a, sa), (b, sb)):
            soup.zero_grad()
            net.feed(soup)
            soup.step(1.0)
            net.sgd()
        torch.testing.assert_close(torch.cat([p.grad.flatten() for p in a.shared]),
                                   torch.cat([p.grad.flatten() for p in b.shared]), atol=1e-6, rtol=1e-6)

    net = Deep(4)
    soup = make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups=net.groups, moo_layers=2, conflict_interval=2)
    sizes = {g: sum(p.numel() for p in ps) for g, ps in net.groups.items()}
    for step in range(3):
        net.feed(soup)
        dim_sel = sum(sizes[g] for g in soup.selected_layers)
        assert soup._buffers.theta.shape == (2, 4, dim_sel)
        if step % 2 == 0:
            assert probe_rows(soup).shape == (4, sum(sizes.values()) - dim_sel)
            assert soup.pending_buffers()[-1] is probe_rows(soup)
        else:
            assert probe_rows(soup) is None and soup.pending_buffers() == [soup._buffers.theta]
            with NoHostSync():
                soup.step(0.0)
            continue
        soup.step(0.0)
        assert probe_rows(soup) is None  # freed at the end of the probe


def test_sketched_probe_scores_on_the_sketches():
    """probe_coords=n: a probe keeps an n-bucket CountSketch of each non-MOO group's gradient
    per objective (both halves added) and scores those groups by the cosine of the sketches;
    n at least a group's size is the exact probe."""
    net = Deep(5)
    n = 6
    kw = dict(layer_groups=net.groups, moo_layers=1, conflict_interval=2)
    soup = make_soup("vs", net.shared, net.heads, OBJ, None, probe_coords=n, **kw)
    exact = make_soup("vs", net.shared, net.heads, OBJ, None, probe_coords=10_000, **kw)
    for step in range(3):
        gs = net.grads()
        for s in (soup, exact):
            s.zero_grad()
            net.feed(s)
        if step % 2 == 0:
            rest = [g for g in GROUPS if g not in soup.selected_layers]
            assert probe_rows(soup).shape == (4, n * len(rest))
        stats, stats_exact = soup.step(0.0), exact.step(0.0)
        net.sgd()
        if step % 2:
            continue
        for gi, g in enumerate(GROUPS):
            if g in rest:
                sk = {}
                for k in OBJ:
                    out = torch.zeros(n)
                    count_sketch_into(out, gi, 0, gs[k, 0][g] + gs[k, 1][g])
                    sk[k, 0], sk[k, 1] = {g: out}, {g: torch.zeros(n)}
                ref = conflict(sk, OBJ, g)
            else:  # MOO layer: scored on its full per-objective gradients
                ref = conflict(gs, OBJ, g)
            torch.testing.assert_close(stats[f"conflict/{g}"], ref, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(stats_exact[f"conflict/{g}"], conflict(gs, OBJ, g), atol=1e-6, rtol=1e-5)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="probe_coords"):
            make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups=net.groups, moo_layers=1, probe_coords=bad)


def test_count_sketch_is_linear_and_keeps_inner_products():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(60_000, generator=g), torch.randn(60_000, generator=g)
    y = 0.6 * x + 0.8 * y  # cosine 0.6
    sx, sy, sxy = torch.zeros(4096), torch.zeros(4096), torch.zeros(4096)
    count_sketch_into(sx, 1, 0, x)
    count_sketch_into(sy, 1, 0, y)
    count_sketch_into(sxy, 1, 0, x[:25_000] + y[:25_000])  # pieces at their offsets add up
    count_sketch_into(sxy, 1, 25_000, x[25_000:] + y[25_000:])
    torch.testing.assert_close(sxy, sx + sy, atol=1e-4, rtol=1e-5)
    tol = 4 / 4096 ** 0.5  # four standard errors of a sketched cosine
    assert abs(float(torch.nn.functional.cosine_similarity(sx, sy, dim=0)) - 0.6) < tol
    assert abs(float(sx.norm() / x.norm()) - 1) < tol
    other = torch.zeros(4096)
    count_sketch_into(other, 2, 0, x)  # another seed (group) hashes differently
    assert not torch.allclose(other, sx)


def test_selection_state_dict_and_errors():
    net = Deep(5)
    kw = dict(modo={"gamma": 0.4}, layer_groups=net.groups, moo_layers=2, conflict_interval=4)
    soup = make_soup("vs", net.shared, net.heads, OBJ, None, **kw)
    for _ in range(2):
        net.feed(soup)
        soup.step(0.0)
    other = make_soup("vs", net.shared, net.heads, OBJ, None, **kw)
    other.load_state_dict(soup.state_dict())
    assert other.selected_layers == soup.selected_layers and len(other.selected_layers) == 2
    assert not other.probe_step and other._step_count == 2
    torch.testing.assert_close(other.levels[0].weighting.weights, soup.levels[0].weighting.weights)

    groups = net.groups
    with pytest.raises(ValueError, match="in no layer group"):
        make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups={"l0": groups["l0"]}, moo_layers=1)
    with pytest.raises(ValueError, match="layer groups 'l0' and 'x'"):
        make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups={**groups, "x": groups["l0"][:1]})
    with pytest.raises(ValueError, match="4 layer groups"):
        make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups=groups, moo_layers=5)
    with pytest.raises(ValueError, match="needs layer_groups"):
        make_soup("vs", net.shared, net.heads, OBJ, None, moo_layers=2)
    with pytest.raises(ValueError, match="conflict_interval"):
        make_soup("vs", net.shared, net.heads, OBJ, None, layer_groups=groups, moo_layers=2, conflict_interval=0)
    soup.zero_grad()
    soup.begin_step(1.0)
    net.feed(soup)
    with pytest.raises(ValueError, match="begin_step"):
        soup.begin_step(1.0)
    with pytest.raises(ValueError, match="differs from begin_step"):
        soup.step(2.0)
