"""Small statistics for comparing result rows: Welch's t-test from summary figures and
Holm's adjustment of a family of p-values.

Result rows carry a mean and a standard deviation over `n` samples (repetitions or
requests), not the samples themselves, so the test works from (mean, std, n) alone.
The Student t distribution is computed here (regularized incomplete beta function by
its continued fraction) so that no scipy is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    if df <= 0:
        return 1.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test on two summarized samples."""

    t: float
    df: float
    p_value: float


def welch_t_test(mean_a: float, std_a: float, n_a: int,
                 mean_b: float, std_b: float, n_b: int) -> WelchResult | None:
    """Welch's t-test of mean_a vs mean_b from sample means, sample stds and counts.

    None when a side has fewer than 2 samples (no spread to test against). Two sides
    with zero spread are significantly different whenever their means differ."""
    if n_a < 2 or n_b < 2 or std_a is None or std_b is None:
        return None
    if any(math.isnan(v) for v in (mean_a, std_a, mean_b, std_b)):
        return None
    va, vb = std_a * std_a / n_a, std_b * std_b / n_b
    diff = mean_b - mean_a
    se2 = va + vb
    if se2 == 0.0:
        if diff == 0.0:
            return WelchResult(t=0.0, df=float(n_a + n_b - 2), p_value=1.0)
        return WelchResult(t=math.copysign(math.inf, diff), df=float(n_a + n_b - 2),
                           p_value=0.0)
    t = diff / math.sqrt(se2)
    denom = (va * va / (n_a - 1) if va else 0.0) + (vb * vb / (n_b - 1) if vb else 0.0)
    df = se2 * se2 / denom if denom else float(n_a + n_b - 2)
    return WelchResult(t=t, df=df, p_value=t_two_sided_p(t, df))


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by (m - i + 1), kept monotone and capped at 1. A test whose adjusted p is
    below alpha is significant with a family-wise error rate of at most alpha: the chance
    that *any* test of the family is a false positive."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted

