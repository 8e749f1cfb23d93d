"""Forecasting: data sets, windows, chronological splits and scaling, baselines, metrics.

The registered ``forecast`` task (:mod:`rnnlab.tasks.forecast`) puts these together; they
are plain NumPy/pandas and usable on their own::

    from rnnlab import forecast
    series = forecast.load_dataset("co2")            # or forecast.load_csv(path, "Close", ...)
    data = forecast.prepare(series, lookback=24, horizon=12)
    x_NxLxF, y_NxH = data.windows("train")         # transformed and scaled
    data.baseline_table("test")                    # statsforecast baselines and AR(p)
    data.evaluate(pred_NxH, "test")                # RMSE/MAE/MASE/sMAPE in the series' units
    fold0 = forecast.prepare(series, lookback=24, horizon=12, folds=3, fold=0)  # rolling origin

The baselines need statsforecast, the ``forecast`` extra: ``pip install "rnnlab[forecast]"``.
"""

from rnnlab.forecast.baselines import all_baselines
from rnnlab.forecast.data import (
    DATASETS,
    Series,
    linear_series,
    load_csv,
    load_dataset,
    register_dataset,
    sine_series,
)
from rnnlab.forecast.evaluation import combine_folds, compare
from rnnlab.forecast.metrics import forecast_metrics, mae, mase, rmse, smape
from rnnlab.forecast.prepare import ForecastData, prepare
from rnnlab.forecast.scaling import Scaler, Spans, fit_scaler, fold_spans, split_spans
from rnnlab.forecast.windows import (
    apply_transform,
    invert_transform,
    make_windows,
    split_sequence,
)

__all__ = ["DATASETS", "ForecastData", "Scaler", "Series", "Spans", "all_baselines",
           "apply_transform", "combine_folds", "compare", "fit_scaler", "fold_spans",
           "forecast_metrics", "invert_transform",
           "linear_series", "load_csv", "load_dataset", "mae", "make_windows", "mase",
           "prepare", "register_dataset", "rmse", "sine_series", "smape", "split_sequence",
           "split_spans"]
