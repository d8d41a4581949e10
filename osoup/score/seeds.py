"""Between-seed test of the method comparison: Welch's t-test on per-seed results.

The paired bootstrap (:mod:`osoup.score.significance`) resamples test utterances with each
method's trained models held fixed: it says whether these models differ on this test set, not
whether training the method again with other seeds would give a different result. This module
asks the second question in the simplest way: for each method trained with at least two seeds,
and each measure and language (and the average over languages), it compares the method's
per-seed corpus values with the reference method's by Welch's unequal-variance t-test, two-sided.

With three seeds per method the test has little power (complete separation of 3 against 3 values
can still give p > 0.05 when the spread is large), so a large p-value means "not shown", never
"equal". The p-value comes from Student's t distribution through the regularised incomplete beta
function, computed here (no SciPy dependency); ``test/test_seeds.py`` checks it against closed
forms and a numerical integration of the density.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from osoup.score.comparison import Method, comparison_measures
from osoup.score.significance import AVE

TEST = "Welch's t-test on the per-seed values, two-sided"
ALPHA = 0.05


@dataclass(frozen=True)
class SeedTest:
    """Method minus reference: difference of the seed means, t, Welch-Satterthwaite df, p."""

    diff: float
    t: float
    df: float
    p: float
    n: int  # seeds of the method
    n_ref: int  # seeds of the reference

    def to_json(self) -> dict:
        return {"diff": self.diff, "t": self.t, "df": self.df, "p": self.p, "n": self.n, "n_ref": self.n_ref}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
            last = d * c
        if abs(last - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t distribution with ``df`` (> 0, not necessarily whole) degrees."""
    if df <= 0:
        raise ValueError(f"t_sf needs df > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def welch(values: list[float], ref: list[float]) -> SeedTest | None:
    """Welch's two-sided t-test of mean(values) - mean(ref); None with fewer than two values on
    either side or no spread on both."""
    if len(values) < 2 or len(ref) < 2:
        return None
    va, vb = statistics.variance(values) / len(values), statistics.variance(ref) / len(ref)
    if va + vb == 0.0:
        return None
    diff = statistics.fmean(values) - statistics.fmean(ref)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(values) - 1) + vb * vb / (len(ref) - 1))
    return SeedTest(diff=diff, t=t, df=df, p=min(1.0, 2.0 * t_sf(abs(t), df)), n=len(values), n_ref=len(ref))



def seed_tests(methods: list[Method], reference: str) -> dict[tuple[str, str, str], SeedTest]:
    """(measure, method label, language | ``ave``) -> the Welch test against ``reference``, for
    the comparison's measures; empty when there is no such method or nobody has two seeds."""
    ref = next((m for m in methods if m.label == reference), None)
    if ref is None:
        return {}
    out: dict[tuple[str, str, str], SeedTest] = {}
    for measure in comparison_measures(methods):
        ref_vals = ref.values(measure)
        for m in methods:
            if m is ref:
                continue
            for lang, vals in m.values(measure).items():
                if lang in ref_vals and (res := welch(vals, ref_vals[lang])) is not None:
                    out[(measure, m.label, lang)] = res
            if (res := welch(m.averages(measure), ref.averages(measure))) is not None:
                out[(measure, m.label, AVE)] = res
    return out


def seed_tests_json(reference: str, tests: dict[tuple[str, str, str], SeedTest]) -> dict:
    """The comparison results.json ``seed_test`` entry."""
    return {"test": TEST, "reference": reference, "alpha": ALPHA,
            "comparisons": [{"measure": ms, "method": label, "lang": lang, **r.to_json()}
                            for (ms, label, lang), r in tests.items()]}
