"""Seed statistics of a study: mean, spread, a 95 % interval, and when a difference is inside the noise.

A CPU-scale effect of 1-2 AP is smaller than the seed-to-seed spread of one run, so
every comparison here is over seeds: ``summarize`` gives mean, sample standard
deviation and the Student-t 95 % interval of the mean; ``difference`` the same for
the difference of two variants' means (Welch), and ``verdict`` says in words whether
that interval excludes zero. ``short_runs`` names the runs that stopped before the
budget, so a variant whose runs did not all reach it is flagged, never silently
compared.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(dof: float) -> float:
    """The two-sided 95 % Student-t quantile for ``dof`` degrees of freedom (linear between integers)."""
    if dof < 1:
        raise ValueError(f"t95: dof={dof} must be >= 1")
    if dof >= len(_T95):
        return 1.96 if dof > 120 else _T95[-1]
    lo = int(math.floor(dof))
    frac = dof - lo
    hi = min(lo + 1, len(_T95))
    return _T95[lo - 1] * (1 - frac) + _T95[hi - 1] * frac


@dataclasses.dataclass(frozen=True)
class Summary:
    """mean, sd (sample, ddof=1) and the 95 % interval of the mean of ``n`` values; sd/ci None for n < 2."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else (self.ci_high - self.ci_low) / 2

    def text(self, digits: int = 1) -> str:
        """``"31.2 ± 1.1 [29.9, 32.5]"`` (mean ± sd [95 % interval]); ``"31.2 (1 run)"``; ``"n/a"``."""
        if self.mean is None:
            return "n/a"
        if self.sd is None:
            return f"{self.mean:.{digits}f} (1 run)"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"

    def signed_text(self, digits: int = 1) -> str:
        """A difference: ``"+1.2 [-0.8, +3.2]"`` (mean [95 % interval]); ``"+1.2 (no interval)"``; ``"n/a"``."""
        if self.mean is None:
            return "n/a"
        if self.ci_low is None:
            return f"{self.mean:+.{digits}f} (no interval)"
        return f"{self.mean:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


def summarize(values: Sequence[float]) -> Summary:
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


def difference(a: Sequence[float], b: Sequence[float]) -> Summary:
    """mean(a) - mean(b) with Welch's 95 % interval (unequal variances); ``sd`` is the standard error."""
    sa, sb = summarize(a), summarize(b)
    if sa.mean is None or sb.mean is None:
        return Summary(0, None, None, None, None)
    diff = sa.mean - sb.mean
    if sa.sd is None or sb.sd is None:
        return Summary(min(sa.n, sb.n), diff, None, None, None)
    va, vb = sa.sd ** 2 / sa.n, sb.sd ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Summary(min(sa.n, sb.n), diff, 0.0, diff, diff)
    dof = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    half = t95(max(1.0, dof)) * se
    return Summary(min(sa.n, sb.n), diff, se, diff - half, diff + half)


def verdict(diff: Summary, what: str = "AP") -> str:
    """In words: whether the 95 % interval of a difference excludes zero."""
    if diff.mean is None:
        return "not measured"
    if diff.ci_low is None:
        return "one run per side: no interval, no claim"
    if diff.ci_low > 0:
        return f"higher {what} (95 % interval above 0)"
    if diff.ci_high < 0:
        return f"lower {what} (95 % interval below 0)"
    return "no difference beyond the seed spread (95 % interval contains 0)"


def short_runs(steps: Sequence[int | None], budget: int) -> list[int]:
    """Indices of the runs that stopped before ``budget`` optimiser steps (or whose steps are unknown)."""
    return [i for i, s in enumerate(steps) if s is None or s < budget]


def value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """``ys`` linearly interpolated at ``x`` (xs increasing); None outside [xs[0], xs[-1]]."""
    if not xs:
        return None
    tol = 1e-9 * max(1.0, abs(xs[-1]))  # the end point itself, computed by another product, counts
    if x < xs[0] - tol or x > xs[-1] + tol:
        return None
    x = min(max(x, xs[0]), xs[-1])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return float(ys[-1])
