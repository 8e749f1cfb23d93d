"""From a :class:`~rnnlab.forecast.data.Series` to model-ready windows, and back to units.

Shape legend: T time steps, C columns (the features, then the target if it is not one),
F features, N windows, L lookback, H horizon.

:func:`prepare` runs the host-side pipeline once:

1. select the columns, check they are numeric, apply the ``missing`` rule;
2. transform every column (``none`` | ``log`` | ``diff`` | ``log_diff``);
3. split the rows chronologically (fractions or dates) and check the series is long enough;
   with ``folds = K``, take fold ``fold`` of the rolling-origin split
   (:func:`~rnnlab.forecast.scaling.fold_spans`) and drop the rows after its test block;
4. fit the scaler on the (fold's) training span only, scale every span with it;
5. list the window origins of each split (a window belongs to the split holding all its
   targets).

:class:`ForecastData` holds the result and maps forecasts in the model's (transformed, scaled)
space back to the series' own units, where metrics and baselines are computed.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rnnlab.forecast import baselines as baselines_lib
from rnnlab.forecast.data import Series, handle_missing, numeric_columns
from rnnlab.forecast.metrics import forecast_metrics
from rnnlab.forecast.scaling import (
    SPLITS,
    Scaler,
    Spans,
    fit_scaler,
    fold_spans,
    split_spans,
)
from rnnlab.forecast.windows import (
    apply_transform,
    forward_transform,
    gather_windows,
    invert_transform,
    transform_offset,
)


@dataclasses.dataclass(frozen=True, eq=False)
class ForecastData:
    """Prepared arrays of one series (host-side NumPy, float64). See :func:`prepare`."""

    name: str
    index: pd.Index
    columns: tuple[str, ...]
    feature_index: tuple[int, ...]
    target_index: int
    lookback: int
    horizon: int
    transform: str
    offset: int
    spans: Spans
    scaler: Scaler
    levels_TxC: np.ndarray  # original units
    model_TxC: np.ndarray  # transformed and scaled; rows before ``offset`` are 0
    origins: dict[str, np.ndarray]  # split -> int64 [N]
    season_length: int
    ar_order: int
    folds: int = 1
    fold: int = 0

    @property
    def target(self) -> str:
        return self.columns[self.target_index]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.columns[i] for i in self.feature_index)

    @property
    def target_levels(self) -> np.ndarray:
        """The target column in its own units, ``[T]``."""
        return self.levels_TxC[:, self.target_index]

    def num_windows(self, split: str) -> int:
        return int(self._origins(split).size)

    def _origins(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not accepted; use one of {SPLITS}")
        return self.origins[split]

    def windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs ``x_NxLxF`` and targets ``y_NxH`` (transformed, scaled)."""
        x_NxLxC, y_NxH = gather_windows(self.model_TxC, self._origins(split), self.lookback,
                                        self.horizon, self.target_index)
        return x_NxLxC[:, :, list(self.feature_index)], y_NxH

    def actuals(self, split: str) -> np.ndarray:
        """Targets ``[N, H]`` in the series' own units."""
        origins = self._origins(split)
        return self.target_levels[origins[:, None] + np.arange(self.horizon)[None, :]]

    def anchors(self, split: str) -> np.ndarray:
        """The target's level at each window's last input step, ``[N]``."""
        return self.target_levels[self._origins(split) - 1]

    def target_times(self, split: str) -> np.ndarray:
        """Index labels ``[N, H]`` of each window's target steps."""
        origins = self._origins(split)
        return np.asarray(self.index)[origins[:, None] + np.arange(self.horizon)[None, :]]

    def to_levels(self, pred_NxH, split: str) -> np.ndarray:
        """Model-space forecasts of ``split``'s windows in the series' own units."""
        pred = np.asarray(pred_NxH, dtype=np.float64)
        expected = (self.num_windows(split), self.horizon)
        if pred.shape != expected:
            raise ValueError(f"forecasts for the {split} windows must be [N, H] = {expected}; "
                             f"got {pred.shape}")
        z = self.scaler.inverse_transform(pred, column=self.target_index)
        return invert_transform(z, self.transform, self.anchors(split))

    def to_model(self, levels_NxH, split: str) -> np.ndarray:
        """The inverse of :meth:`to_levels`: forecasts in units to the model's space."""
        z = forward_transform(levels_NxH, self.transform, self.anchors(split))
        return self.scaler.transform(z, column=self.target_index)

    def evaluate(self, pred_NxH, split: str = "test") -> dict[str, float]:
        """RMSE, MAE, MASE, sMAPE (overall and per step) of model-space forecasts, computed in
        the series' own units (:func:`rnnlab.forecast.metrics.forecast_metrics`)."""
        return forecast_metrics(self.actuals(split), self.to_levels(pred_NxH, split),
                                self.target_levels[:self.spans.train_end], self.season_length)

    def baseline_forecasts(self, split: str = "test", notes: list[str] | None = None
                           ) -> dict[str, np.ndarray]:
        """Every baseline's ``[N, H]`` forecasts of ``split``'s windows, in units, fitted on
        the training span (:mod:`rnnlab.forecast.baselines`); the fits' warnings are appended
        to ``notes`` when given."""
        return baselines_lib.all_baselines(
            self.target_levels, self._origins(split), self.horizon,
            train_end=self.spans.train_end, season_length=self.season_length,
            ar_order=self.ar_order, notes=notes)

    def baseline_table(self, split: str = "test", notes: list[str] | None = None
                       ) -> pd.DataFrame:
        """One row per baseline, one column per metric (:meth:`evaluate`'s keys)."""
        actual = self.actuals(split)
        train_y = self.target_levels[:self.spans.train_end]
        rows = {name: forecast_metrics(actual, pred, train_y, self.season_length)
                for name, pred in self.baseline_forecasts(split, notes).items()}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")

    def forecast_frame(self, pred_NxH, split: str = "test") -> pd.DataFrame:
        """Long table of ``origin`` (window), ``step`` (1..H), ``time``, ``actual`` and
        ``forecast`` (units), for plots."""
        levels = self.to_levels(pred_NxH, split)
        n, h = levels.shape
        return pd.DataFrame({
            "origin": np.repeat(np.arange(n), h),
            "step": np.tile(np.arange(1, h + 1), n),
            "time": self.target_times(split).reshape(-1),
            "actual": self.actuals(split).reshape(-1),
            "forecast": levels.reshape(-1),
        })


def prepare(series: Series, *, lookback: int, horizon: int, target: str | None = None,
            features: Sequence[str] | None = None, val_fraction: float = 0.1,
            test_fraction: float = 0.2, val_start: str | None = None,
            test_start: str | None = None, scaler: str = "minmax", transform: str = "none",
            missing: str = "error", season_length: int | None = None,
            ar_order: int | None = None, folds: int = 1, fold: int | None = None
            ) -> ForecastData:
    """Runs the pipeline of the module docstring.

    Args:
      series: the loaded series.
      lookback: L, input steps per window.
      horizon: H, target steps per window (direct multi-step).
      target: the column to forecast; ``None``: the series' default.
      features: input columns; ``None``: the series' defaults.
      val_fraction, test_fraction: span sizes as fractions of the rows (after ``missing``).
      val_start, test_start: dates starting the spans instead (both or neither).
      scaler: ``minmax`` | ``standard`` | ``none``, fitted on the training span only.
      transform: ``none`` | ``log`` | ``diff`` | ``log_diff``, applied to every column.
      missing: ``error`` | ``interpolate`` | ``drop``.
      season_length: m for seasonal naive and MASE; ``None``: the series'.
      ar_order: p of the AR baseline; ``None``: ``lookback``.
      folds: K forecast origins stepping through the test span (rolling origin); 1: the
        single split.
      fold: which of the K folds, ``0 .. K - 1``; ``None``: the last (the split's own end).

    Raises:
      ValueError: naming the argument, for a bad value, a series too short for its spans, or
        a fold out of range.
    """
    for field, value in (("lookback", lookback), ("horizon", horizon)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{field} must be an int >= 1; got {value!r}")
    target = series.target if target is None else target
    features = tuple(series.features if features is None else features)
    if not features:
        raise ValueError("features must name at least one column")
    columns = tuple(dict.fromkeys([*features, target]))
    frame = numeric_columns(series.frame, columns, series.name)
    frame = handle_missing(frame, missing, series.name)
    levels = frame.to_numpy(np.float64)
    offset = transform_offset(transform)
    z = apply_transform(levels, transform, columns)
    spans = split_spans(levels.shape[0], lookback=lookback, horizon=horizon,
                        val_fraction=val_fraction, test_fraction=test_fraction,
                        index=frame.index, val_start=val_start, test_start=test_start,
                        offset=offset, name=f"series {series.name!r}")
    all_folds = fold_spans(spans, folds, lookback=lookback, horizon=horizon, offset=offset,
                           name=f"series {series.name!r}")
    k = folds - 1 if fold is None else fold
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 0 <= k < folds:
        raise ValueError(f"fold must be an int in [0, {folds - 1}] (folds={folds}) or None; "
                         f"got {fold!r}")
    spans = all_folds[k]
    frame, levels, z = frame.iloc[:spans.length], levels[:spans.length], z[:spans.length]
    fitted = fit_scaler(scaler, z, spans, fit_on="train", offset=offset)
    model = fitted.transform(z)
    model[:offset] = 0.0
    origins = {split: spans.origins(split, lookback, horizon, offset) for split in SPLITS}
    m = series.season_length if season_length is None else int(season_length)
    p = lookback if ar_order is None else int(ar_order)
    return ForecastData(
        name=series.name, index=frame.index, columns=columns,
        feature_index=tuple(columns.index(c) for c in features),
        target_index=columns.index(target), lookback=lookback, horizon=horizon,
        transform=transform, offset=offset, spans=spans, scaler=fitted, levels_TxC=levels,
        model_TxC=model, origins=origins, season_length=m, ar_order=p, folds=int(folds),
        fold=int(k))
