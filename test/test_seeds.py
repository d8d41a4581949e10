"""The between-seed test of osoup-results (osoup.score.seeds): Student's t tail against closed
forms and a numerical integration of the density, Welch's statistic against a direct
computation, and the RESULTS.md / results.json section on an experiment tree."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from osoup.bin import results as results_cli
from osoup.score import plots
from osoup.score.seeds import betainc, t_sf, welch


def _t_sf_by_integration(t: float, df: float, steps: int = 20000) -> float:
    """P(T > t), t >= 0, as 1/2 minus Simpson's rule over Student's density on [0, t]."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = lambda x: math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))  # noqa: E731
    h = t / steps
    area = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 - area * h / 3


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 7.0, -1.7])
def test_t_tail_matches_closed_forms_for_one_and_two_degrees(t):
    assert t_sf(t, 1.0) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_sf(t, 2.0) == pytest.approx(0.5 - t / (2 * math.sqrt(t * t + 2)), abs=1e-12)


@pytest.mark.parametrize("t,df", [(0.8, 3.7), (2.1, 2.3), (4.0, 5.0), (1.5, 30.0)])
def test_t_tail_matches_integrated_density_for_fractional_degrees(t, df):
    assert t_sf(t, df) == pytest.approx(_t_sf_by_integration(t, df), abs=1e-9)


def test_t_tail_tends_to_the_normal_tail_and_gives_the_tabled_critical_values():
    assert t_sf(1.96, 1e7) == pytest.approx(0.5 * math.erfc(1.96 / math.sqrt(2)), abs=1e-6)
    for crit, df in ((12.706205, 1), (4.302653, 2), (3.182446, 3), (2.776445, 4)):  # two-sided 5% points
        assert 2 * t_sf(crit, df) == pytest.approx(0.05, abs=1e-6)
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    # I_x(a, 1) = x^a
    assert betainc(2.5, 1.0, 0.3) == pytest.approx(0.3 ** 2.5, rel=1e-12)
    with pytest.raises(ValueError):
        t_sf(1.0, 0.0)


def test_welch_matches_a_direct_computation():
    a, b = [18.9, 17.3, 18.6], [24.2, 24.3, 25.1, 23.0]
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 4
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    r = welch(a, b)
    assert (r.n, r.n_ref) == (3, 4)
    assert r.diff == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert r.t == pytest.approx(t) and r.df == pytest.approx(df)
    assert r.p == pytest.approx(2 * _t_sf_by_integration(abs(t), df), abs=1e-9)
    # swapping the sides flips the sign and keeps p
    s = welch(b, a)
    assert s.t == pytest.approx(-t) and s.p == pytest.approx(r.p)
    # one seed, or no spread on either side: no test
    assert welch([1.0], [2.0, 3.0]) is None and welch([2.0, 2.0], [3.0, 3.0]) is None


def _exp(root: Path, name: str, label: str, seed: int, asr: dict[str, float], bleu: float) -> Path:
    """An experiment directory holding only a results.json, as osoup-score writes it."""
    sets = [{"set": f"test_{k}", "split": "test", "lang": k, "task": "asr", "metric": "cer", "value": v, "cer": v}
            for k, v in asr.items()]
    sets.append({"set": "test_es", "split": "test", "lang": "es", "task": "st", "metric": "bleu", "value": bleu,
                 "bleu": bleu})
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "results.json").write_text(json.dumps({"exp": str(exp), "label": label, "seed": seed,
                                                  "decodes": {"greedy": {"sets": sets}}}), encoding="utf-8")
    return exp


def test_results_report_the_between_seed_test(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: Path(path))
    exps = [_exp(tmp_path, f"joint_seed{s}", "joint", s, {"en": 25 + d, "es": 11 - d}, 27 + 2 * d)
            for s, d in ((1, 0.0), (2, 0.6), (3, -0.4))]
    exps += [_exp(tmp_path, f"vm_seed{s}", "vm", s, {"en": 19 + d, "es": 7 + d}, 26 - 3 * d)
             for s, d in ((1, 0.2), (2, -0.5), (3, 0.1))]
    exps.append(_exp(tmp_path, "vc", "vc", 1, {"en": 30.0, "es": 15.0}, 20.0))  # one seed: no test
    out = tmp_path / "cmp"
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap", "0"]) == 0
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    entry = summary["seed_test"]
    assert entry["reference"] == "joint" and entry["alpha"] == 0.05
    tests = {(c["measure"], c["method"], c["lang"]): c for c in entry["comparisons"]}
    assert set(tests) == {("asr", "vm", "en"), ("asr", "vm", "es"), ("asr", "vm", "ave"),
                          ("st", "vm", "es"), ("st", "vm", "ave")}  # nothing for vc (one seed)
    en = tests[("asr", "vm", "en")]
    direct = welch([19.2, 18.5, 19.1], [25.0, 25.6, 24.6])
    assert en["diff"] == pytest.approx(direct.diff) and en["p"] == pytest.approx(direct.p)
    assert en["p"] < 0.05 and tests[("st", "vm", "es")]["p"] > 0.05
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Between seeds vs joint" in md and "Welch's t-test" in md
    assert f"| En | **{direct.diff:+.1f} (p " in md
    bleu = tests[("st", "vm", "es")]
    assert f"| Es→En | {bleu['diff']:+.1f} (p {bleu['p']:.3f}) |" in md
    # only one seed each: no section and no entry
    out1 = tmp_path / "cmp1"
    assert results_cli.main(["--exps", str(exps[0]), str(exps[-1]), "--out", str(out1), "--bootstrap", "0"]) == 0
    assert "Between seeds" not in (out1 / "RESULTS.md").read_text(encoding="utf-8")
    assert "seed_test" not in json.loads((out1 / "results.json").read_text(encoding="utf-8"))
