"""xent's own distributions against numbers recorded once from scipy 1.17.1 and statsmodels 0.15.0
(scipy.special.betainc, scipy.stats.t.ppf / t.sf, statsmodels' mcnemar(exact=True)); neither is
a dependency. The issue's McNemar numbers: b = 15, c = 35 → exact 0.00660045."""

from __future__ import annotations

import math

import pytest

from xentcli import stats


@pytest.mark.parametrize("a,b,x,want", [
    (0.5, 0.5, 0.3, 0.36901011956554536),
    (2.5, 0.5, 0.9, 0.48958974456442755),
    (1e4, 0.5, 0.9999, 0.1572940177633515),
    (3, 4, 0.2, 0.09888000000000005),
    (1500, 1621, 0.5, 0.984862020909889),
])
def test_betainc(a, b, x, want):
    assert stats.betainc(a, b, x) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("p,df,want", [
    (0.975, 5, 2.5705818356363146),
    (0.975, 999, 1.9623414611334493),
    (0.995, 1, 63.656741162871526),
    (0.9, 2.5, 1.7302509288071766),
    (0.975, 1e6, 1.959966356814107),
])
def test_t_quantile(p, df, want):
    assert stats.t_quantile(p, df) == pytest.approx(want, rel=1e-10)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-want, rel=1e-10)


@pytest.mark.parametrize("p,df,want", [  # scipy 1.17.1, scipy.stats.t.ppf(p, df)
    (0.975, 2000, 1.9611508260994377), (0.995, 2000, 2.5782897875575186), (0.9995, 2000, 3.2953981367297707),
    (0.975, 3999, 1.9605573771860272), (0.995, 3999, 2.577059300448384), (0.9995, 3999, 3.292961407380423),
    (0.975, 7000, 1.9603029380395613), (0.995, 7000, 2.576531847828238), (0.9995, 7000, 3.2919172264972456),
])
def test_t_quantile_of_many_degrees_of_freedom_is_the_expansion(p, df, want):
    """From 2,000 degrees of freedom (and |z| ≤ 4.02) the Cornish–Fisher expansion is the answer,
    closer to scipy than the solver was (4.8e-14 here, 9.4e-13 over 0.5 < p ≤ 0.99997) and without its
    ~66 µs a call."""
    assert stats.t_quantile(p, df) == pytest.approx(want, rel=1e-15, abs=0)


@pytest.mark.parametrize("p,df,want", [
    # scipy.stats.t.ppf(p, df) (scipy 1.17.1, recorded once): Newton from the Cornish–Fisher start below
    # 10,000 degrees of freedom, the expansion alone from there (where the cdf's rounding would cost digits)
    (0.995, 3, 5.840909309733355),
    (0.975, 29, 2.045229642132703),
    (0.9995, 100, 3.390491311164263),
    (0.975, 3998, 1.9605575256525767),
    (0.99999, 4000, 4.270011222909706),
    (0.975, 9999, 1.960201263621357),
    (0.9, 1e4, 1.2816362297304775),
    (0.975, 1e7, 1.959964221767205),
    (0.6, 1e12, 0.253347103135867),
])
def test_t_quantile_to_1e12_across_degrees_of_freedom(p, df, want):
    assert stats.t_quantile(p, df) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("t,df,want", [
    (2.1, 10, 0.06207724420221853),
    (0.3, 999, 0.7642395665698116),
    (5.0, 1e5, 5.742701678641679e-07),
    (40, 3, 3.4380680789158506e-05),
])
def test_t_two_sided_p(t, df, want):
    assert stats.t_two_sided_p(t, df) == pytest.approx(want, rel=1e-10)
    assert stats.t_two_sided_p(-t, df) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("b,c,want", [
    (15, 35, 0.006600447966810918),  # the number: 0.00660045
    (0, 0, 1.0),
    (0, 7, 0.015625),  # 2 · 2^-7, by hand
    (1500, 1620, 0.033118547219138456),
    (3000, 2900, 0.19743902484357673),
])
def test_mcnemar_exact(b, c, want):
    assert stats.mcnemar_exact_p(b, c) == pytest.approx(want, rel=1e-10)
    assert stats.mcnemar_exact_p(c, b) == pytest.approx(want, rel=1e-10)


def test_normal_quantile():
    assert stats.normal_quantile(0.975) == pytest.approx(1.959963984540054, rel=1e-12)
    assert math.isnan(stats.t_quantile(1.0, 5))


def test_t_upper_p():
    # scipy.stats.t.sf(1.7, 12) and t.sf(-0.4, 5) (scipy 1.16, recorded once)
    assert stats.t_upper_p(1.7, 12) == pytest.approx(0.057439932697604626, rel=1e-10)
    assert stats.t_upper_p(-0.4, 5) == pytest.approx(0.6471634425834427, rel=1e-10)


def test_holm_against_statsmodels():
    # statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.005, 0.5], alpha=0.05, method='holm')
    # (statsmodels 0.14, recorded once): reject [T, F, F, T, F], adjusted [0.04, 0.09, 0.09, 0.025, 0.5]
    assert stats.holm([0.01, 0.04, 0.03, 0.005, 0.5], 0.05) == [(3, pytest.approx(0.025)), (0, pytest.approx(0.04))]
    assert stats.holm([], 0.05) == []
    assert stats.holm([0.05, 0.05], 0.05) == []  # 0.05 > 0.05/2: the first step already stops


@pytest.mark.parametrize("p", [0.5 + 5e-7, 0.5 + 1e-12, 0.6, 0.75, 0.975, 0.99999999995, 1 - 1e-15])
def test_t_quantile_at_extreme_levels_against_closed_forms(p):
    """Found in review: near the centre (p = ½ + 5e-7, a --confidence of 1e-6) and far in the tail
    (p = 1 − 1e-15) the quantile lost up to 1e-4 and 1e-2 of itself: Newton on cdf(t) − p keeps only
    the digits 1e-16 leaves of p − ½ or 1 − p. Against the closed forms for 1 and 2 degrees of
    freedom (by hand, from the float p exactly): tan(π(p − ½)) = cot(π(1 − p)), and
    (2p − 1)/√(2p(1 − p))."""
    from fractions import Fraction

    one = math.tan(math.pi * (p - 0.5)) if p < 0.75 else 1 / math.tan(math.pi * (1 - p))
    exact = Fraction(p)
    two = float(2 * exact - 1) / math.sqrt(float(2 * exact * (1 - exact)))
    assert stats.t_quantile(p, 1) == pytest.approx(one, rel=1e-13)
    assert stats.t_quantile(p, 2) == pytest.approx(two, rel=1e-13)
    assert stats.t_quantile(1 - p, 2) == pytest.approx(-two, rel=1e-13)
