"""statsforecast baselines: hand computations, the airline series' published errors, and
fits that see the training span only."""

import sys

import numpy as np
import pytest

from rnnlab import forecast
from rnnlab.forecast import baselines, metrics


def _sf(name, y, origins, horizon, train_end, m=1):
    return baselines.statsforecast_baseline(name, y, origins, horizon, train_end=train_end,
                                            season_length=m)[0]


def test_simple_baselines_by_hand_on_a_tiny_series():
    y = np.array([0.0, 1.0, 3.0, 2.0, 4.0, 7.0, 5.0])
    # naive: the last value before each origin, every step
    np.testing.assert_array_equal(_sf("naive", y, [4, 5], 2, 4), [[2.0, 2.0], [4.0, 4.0]])
    # mean: the training span y[:4] = (0 + 1 + 3 + 2) / 4 for every window
    np.testing.assert_array_equal(_sf("mean", y, [4, 5], 2, 4), [[1.5, 1.5], [1.5, 1.5]])
    # drift: slope fitted on y[:4], (2 - 0) / 3; level the last value before the origin
    np.testing.assert_allclose(_sf("drift", y, [4, 5], 2, 4),
                               [[2 + 2 / 3, 2 + 4 / 3], [4 + 2 / 3, 4 + 4 / 3]], rtol=1e-12)
    # seasonal naive, m = 2, H = 3 > m: y[t0-2], y[t0-1], y[t0-2]
    np.testing.assert_array_equal(_sf("seasonal_naive", y, [4], 3, 4, m=2),
                                  [[3.0, 2.0, 3.0]])


def test_seasonal_naive_is_exact_on_a_periodic_series():
    y = np.tile([1.0, 5.0, 2.0, 8.0], 10)
    origins = np.arange(8, 34)
    pred = _sf("seasonal_naive", y, origins, 6, 8, m=4)  # H > m wraps around
    actual = y[origins[:, None] + np.arange(6)[None, :]]
    np.testing.assert_array_equal(pred, actual)


def test_airline_seasonal_naive_and_naive_rmse_for_1960():
    # Box & Jenkins' airline passengers: forecast the 12 months of 1960 from 1949-1959.
    # Known values: seasonal naive RMSE 50.71, naive (last value, 1959-12 = 405) RMSE 102.98.
    air = forecast.load_dataset("air_passengers")
    data = forecast.prepare(air, lookback=12, horizon=12, val_start="1959-01-01",
                            test_start="1960-01-01")
    assert data.num_windows("test") == 1 and data.season_length == 12
    actual = data.actuals("test")
    assert str(data.target_times("test")[0, 0])[:7] == "1960-01"
    table = data.baseline_table("test")
    assert table.loc["seasonal_naive", "rmse"] == pytest.approx(50.71, abs=0.005)
    assert table.loc["naive", "rmse"] == pytest.approx(102.98, abs=0.005)
    # and by hand from the series itself
    y = air.frame["passengers"].to_numpy()
    assert metrics.rmse(actual[0], y[120:132]) == pytest.approx(50.7083, abs=1e-4)
    assert metrics.rmse(actual[0], np.full(12, y[131])) == pytest.approx(102.9765, abs=1e-4)


def _trend_season(n=120, m=12, seed=0):
    t = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return 50.0 + 0.5 * t + 8.0 * np.sin(2 * np.pi * t / m) + rng.standard_normal(n)


def test_an_outlier_in_the_test_span_moves_no_baseline_fit():
    y = _trend_season()
    train_end, outlier = 84, 100
    origins = np.arange(90, 115)
    spoiled = y.copy()
    spoiled[outlier] += 5000.0
    kw = {"train_end": train_end, "season_length": 12, "ar_order": 12}
    clean = baselines.all_baselines(y, origins, 3, **kw)
    dirty = baselines.all_baselines(spoiled, origins, 3, **kw)
    assert set(clean) == {*baselines.STATSFORECAST_MODELS, "ar(12)"}
    before = origins <= outlier  # windows whose history y[:t0] does not hold the outlier
    for name in clean:
        np.testing.assert_array_equal(clean[name][before], dirty[name][before], err_msg=name)
    # the mean is a fitted constant: no window moves
    np.testing.assert_array_equal(clean["mean"], dirty["mean"])
    # the fitted parameters of the models are the same objects' (the training span is equal)
    for name in ("auto_ets", "auto_arima", "auto_theta", "drift"):
        a, _ = baselines.fit_model(name, y[:train_end], 12)
        b, _ = baselines.fit_model(name, spoiled[:train_end], 12)
        assert a is b, name
    # has teeth: the outlier does reach later windows through their history, and a fit that
    # saw it (outlier inside the training span) changes the forecasts of every window
    assert not np.array_equal(clean["naive"][~before], dirty["naive"][~before])
    inside = y.copy()
    inside[train_end - 1] += 5000.0  # the last training row (drift reads first and last)
    moved = baselines.all_baselines(inside, origins, 3, **kw)
    for name in ("mean", "drift", "auto_ets", "auto_arima", "auto_theta", "ar(12)"):
        assert not np.allclose(moved[name], clean[name]), name


def test_baselines_refuse_origins_inside_the_training_span():
    y = _trend_season(40)
    with pytest.raises(ValueError, match="at or after train_end=30"):
        _sf("auto_ets", y, [20, 31], 1, 30)
    with pytest.raises(ValueError, match="baseline 'ets' is not a statsforecast model"):
        baselines.fit_model("ets", y)
    with pytest.raises(ValueError, match="finite"):
        _sf("naive", np.r_[y[:-1], np.nan], [35], 1, 30)


def test_ar_by_least_squares_matches_numpy_lstsq():
    y = _trend_season(80)
    origins = np.arange(60, 78)
    pred = baselines.ar(y, origins, 1, train_end=60, order=3)
    # by hand: regress y[t] on 1, y[t-1], y[t-2], y[t-3] over t = 3..59
    t = np.arange(3, 60)
    design = np.column_stack([np.ones(t.size), y[t - 1], y[t - 2], y[t - 3]])
    coef = np.linalg.lstsq(design, y[t], rcond=None)[0]
    by_hand = np.column_stack([np.ones(origins.size), y[origins - 1], y[origins - 2],
                               y[origins - 3]]) @ coef
    np.testing.assert_allclose(pred[:, 0], by_hand, rtol=1e-10)


def test_a_missing_statsforecast_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsforecast", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "rnnlab\[forecast\]"'):
        baselines.require_statsforecast()
