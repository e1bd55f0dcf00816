"""Seed statistics of studies: spread, intervals, Welch differences, short-run flags."""
import math

import pytest

from hdetr.studies.statistics import difference, short_runs, summarize, t95, value_at, verdict


def test_summary_of_three_seeds_has_sample_sd_and_t_interval():
    s = summarize([14.5, 17.0, 18.3])
    assert s.n == 3 and s.mean == pytest.approx(16.6)
    sd = math.sqrt(((14.5 - 16.6) ** 2 + (17.0 - 16.6) ** 2 + (18.3 - 16.6) ** 2) / 2)
    assert s.sd == pytest.approx(sd)
    assert s.half_width == pytest.approx(4.303 * sd / math.sqrt(3))
    assert s.text() == f"16.6 ± {sd:.1f} [{16.6 - s.half_width:.1f}, {16.6 + s.half_width:.1f}]"


def test_one_or_no_value_has_no_interval():
    assert summarize([3.0]).text() == "3.0 (1 run)" and summarize([3.0]).ci_low is None
    assert summarize([]).text() == "n/a"


def test_t_quantiles():
    assert t95(2) == pytest.approx(4.303) and t95(1) == pytest.approx(12.706)
    assert t95(2.5) == pytest.approx((4.303 + 3.182) / 2)
    assert t95(500) == pytest.approx(1.96)
    with pytest.raises(ValueError):
        t95(0)


def test_difference_inside_the_spread_is_not_a_claim():
    noisy = difference([16.0, 13.0, 19.0], [15.0, 17.0, 18.0])
    assert noisy.ci_low < 0 < noisy.ci_high
    assert verdict(noisy).startswith("no difference beyond the seed spread")
    clear = difference([30.0, 31.0, 30.5], [20.0, 21.0, 20.5])
    assert clear.mean == pytest.approx(10.0) and clear.ci_low > 0
    assert verdict(clear).startswith("higher AP")
    assert verdict(difference([10.0], [12.0])) == "one run per side: no interval, no claim"


def test_welch_interval_uses_the_welch_satterthwaite_degrees_of_freedom():
    a, b = [10.0, 12.0, 14.0], [11.0, 11.5, 12.0]
    d = difference(a, b)
    va, vb = summarize(a).sd ** 2 / 3, summarize(b).sd ** 2 / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert d.sd == pytest.approx(math.sqrt(va + vb))
    assert (d.ci_high - d.ci_low) / 2 == pytest.approx(t95(dof) * math.sqrt(va + vb))


def test_short_runs_and_interpolation():
    assert short_runs([400, 363, None, 400], 400) == [1, 2]
    assert value_at([0, 100, 200], [0.0, 10.0, 14.0], 150) == pytest.approx(12.0)
    assert value_at([0, 100], [0.0, 10.0], 100 * (1 + 1e-12)) == pytest.approx(10.0)
    assert value_at([0, 100], [0.0, 10.0], 101) is None
