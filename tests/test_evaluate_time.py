"""The time analysis: decorrelation times of d_z and of the patches themselves, never a time
outside the sampled range."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mummi_ml.evaluate.figures import time_panel
from mummi_ml.evaluate.report import time_section_html
from mummi_ml.evaluate.spacetime import (
    BinnedCurve,
    compare_times,
    fit_decorrelation,
    time_difference_curve,
)

T = np.round(np.arange(0.0, 2.0001, 0.05), 6)  # sampled time differences 0 .. 2 us


def _curve(y: np.ndarray, t: np.ndarray = T) -> BinnedCurve:
    return BinnedCurve(t, y, np.zeros_like(t), np.full_like(t, 20.0))


def _saturating(tau: float, a: float = 0.3, b: float = 2.0) -> BinnedCurve:
    return _curve(a + b * (1 - np.exp(-T / tau)))


def test_a_converging_fit_inside_the_sampled_range_is_determined():
    fit = fit_decorrelation(_saturating(0.4), diffusive_us=0.53)
    assert fit.determined and fit.reason == ""
    assert fit.tau_us == pytest.approx(0.4, rel=1e-4)
    assert fit.ratio == pytest.approx(0.4 / 0.53, rel=1e-4)
    assert (fit.t_min_us, fit.t_max_us) == (0.05, 2.0)


def test_metric_and_ground_truth_times_give_their_ratio():
    cmp = compare_times(fit_decorrelation(_saturating(0.3), 0.53),
                        fit_decorrelation(_saturating(0.6), 0.53))
    assert cmp.ratio == pytest.approx(0.5, rel=1e-3) and cmp.reason == ""


def test_a_curve_still_rising_at_the_last_sample_has_no_time():
    # linear growth: the saturating fit runs off to its bound, far beyond 2 us
    fit = fit_decorrelation(_curve(0.1 + 0.5 * T), diffusive_us=0.53)
    assert not fit.determined
    assert fit.tau_us is None and fit.ratio is None
    assert "beyond the largest sampled time difference" in fit.reason


def test_a_curve_flat_from_the_first_sample_has_no_time():
    y = np.where(T > 0, 1.0, 0.0)  # decorrelated before 0.05 us
    fit = fit_decorrelation(_curve(y), diffusive_us=0.53)
    assert not fit.determined and fit.tau_us is None
    assert "below the smallest sampled time difference" in fit.reason


def test_too_few_time_differences_are_not_determined():
    fit = fit_decorrelation(_curve(np.array([0.0, 1.0]), np.array([0.0, 0.1])), 0.53)
    assert not fit.determined and "needs 3" in fit.reason


def test_a_missing_time_leaves_the_ratio_undetermined_with_the_reason():
    good = fit_decorrelation(_saturating(0.4), 0.53)
    bad = fit_decorrelation(_curve(0.1 + 0.5 * T), 0.53)
    cmp = compare_times(bad, good)
    assert cmp.ratio is None and cmp.reason == "d_z time not determined"


def test_the_ground_truth_curve_of_decorrelating_fields_gives_their_time():
    # Ornstein-Uhlenbeck fields with correlation exp(-t / 0.25): the patch distance rises and
    # levels off; the fit finds a time of that order, inside the sampled range
    rng = np.random.default_rng(0)
    dt, n_t, n_hist, dim, tau = 0.02, 80, 6, 400, 0.25
    rho = np.exp(-dt / tau)
    x = np.empty((n_hist, n_t, dim))
    x[:, 0] = rng.normal(size=(n_hist, dim))
    for k in range(1, n_t):
        x[:, k] = rho * x[:, k - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(n_hist, dim))
    pid = np.repeat(np.arange(n_hist), n_t)
    t = np.tile(np.arange(n_t) * dt, n_hist)
    curve = time_difference_curve(x.reshape(-1, dim), pid, t, chunk_elements=10_000)
    fit = fit_decorrelation(curve, 0.53)
    assert fit.determined, fit.reason
    assert 0.1 < fit.tau_us < 0.5


def test_plot_axes_stay_on_the_sampled_times_when_the_fit_is_not_determined():
    fit = fit_decorrelation(_curve(0.1 + 0.5 * T), diffusive_us=7.0)  # estimate beyond data
    fig, ax = plt.subplots()
    time_panel(ax, _curve(0.1 + 0.5 * T), fit, "d_z")
    assert ax.get_xlim()[1] <= 1.02 * T.max() + 1e-12
    assert all(max(line.get_xdata()) <= T.max() * 1.02 for line in ax.get_lines())
    assert "not determined" in ax.get_title()
    plt.close(fig)


def test_report_says_not_determined_and_why_instead_of_a_time():
    bad = fit_decorrelation(_curve(0.1 + 0.5 * T), 0.53)
    good = fit_decorrelation(_saturating(0.4), 0.53)
    cmp = compare_times(bad, good)
    html = time_section_html({"fit": bad.to_dict(), "diffusive_us": 0.53,
                              "ground_truth": {"fit": good.to_dict()},
                              "ratio_to_ground_truth": cmp.ratio, "ratio_reason": cmp.reason})
    assert "metric (d_z): not determined (fitted time" in html
    assert "ground truth): 0.4 us" in html
    assert "ratio d_z / d_x: not determined" in html
