"""Forecast metrics against utilsforecast's losses, and the documented zero-denominator and
non-finite behaviour against hand computations."""

import numpy as np
import pandas as pd
import pytest
from utilsforecast import losses

from rnnlab.forecast import metrics


def _uf(actual_NxH, forecast_NxH, train_y, m):
    """utilsforecast's losses on the flattened windows, one series."""
    a, f = np.ravel(actual_NxH), np.ravel(forecast_NxH)
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(a.size) + len(train_y), "y": a,
                       "model": f})
    train = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(train_y)), "y": train_y})
    return {"rmse": losses.rmse(df, ["model"])["model"].item(),
            "mae": losses.mae(df, ["model"])["model"].item(),
            "smape": losses.smape(df, ["model"])["model"].item(),
            "mase": losses.mase(df, ["model"], seasonality=m, train_df=train)["model"].item()}


@pytest.mark.parametrize("m", [1, 4])
def test_metrics_agree_with_utilsforecast(m):
    rng = np.random.default_rng(3)
    actual = 10.0 + rng.standard_normal((7, 3))
    forecast = actual + rng.standard_normal((7, 3))
    train_y = 10.0 + np.cumsum(rng.standard_normal(40))
    ours = metrics.forecast_metrics(actual, forecast, train_y, season_length=m)
    ref = _uf(actual, forecast, train_y, m)
    assert ours["rmse"] == pytest.approx(ref["rmse"], rel=1e-12)
    assert ours["mae"] == pytest.approx(ref["mae"], rel=1e-12)
    assert ours["mase"] == pytest.approx(ref["mase"], rel=1e-12)
    # utilsforecast's sMAPE is mean(|y - f| / (|y| + |f|)) on 0..1; ours the M4 0..200 scale
    assert ours["smape"] == pytest.approx(200.0 * ref["smape"], rel=1e-12)


def test_smape_zero_over_zero_counts_as_zero_like_utilsforecast():
    actual = np.array([[0.0, 2.0, 0.0]])
    forecast = np.array([[0.0, 1.0, 3.0]])
    # terms: 0 (0/0), 2*1/3, 2*3/3 = 2 -> mean (2/3 + 2) / 3, in percent
    assert metrics.smape(actual, forecast) == pytest.approx(100 * (2 / 3 + 2) / 3)
    ref = _uf(actual, forecast, np.arange(5.0), 1)["smape"]
    assert metrics.smape(actual, forecast) == pytest.approx(200.0 * ref)
    both_zero = metrics.forecast_metrics(np.zeros((2, 2)), np.zeros((2, 2)), [1.0, 2.0, 4.0])
    assert both_zero["smape"] == 0.0 and both_zero["rmse"] == 0.0


def test_mase_with_a_zero_scale_is_nan_and_flagged():
    # a constant training span: every in-sample naive error is 0, the scale is 0
    out = metrics.forecast_metrics([[1.0, 2.0]], [[1.5, 2.0]], [3.0, 3.0, 3.0], 1)
    assert out["mase_scale"] == 0.0
    assert np.isnan(out["mase"]) and np.isnan(out["mase_h1"]) and np.isnan(out["mase_h2"])
    assert out["mae"] == pytest.approx(0.25)  # the other metrics are unaffected
    # a span repeating every m = 2 steps has scale 0 at m = 2, not at m = 1
    periodic = [1.0, 4.0, 1.0, 4.0, 1.0]
    assert metrics.mase_scale(periodic, 2) == 0.0
    assert metrics.mase_scale(periodic, 1) == pytest.approx(3.0)
    assert np.isnan(metrics.mase([[1.0]], [[2.0]], periodic, 2))
    ok = metrics.forecast_metrics([[1.0]], [[2.0]], periodic, 1)
    assert ok["mase"] == pytest.approx(1 / 3) and ok["mase_scale"] == pytest.approx(3.0)


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match=r"forecast values must be finite.*1 non-finite of 4"):
        metrics.forecast_metrics(np.ones((2, 2)), [[1.0, np.nan], [1.0, 1.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"actual values must be finite.*got 2 non-finite"):
        metrics.rmse([np.inf, -np.inf], [1.0, 1.0])
    with pytest.raises(ValueError, match="MASE needs a finite training series; got 1"):
        metrics.mase_scale([1.0, np.nan, 2.0])
