"""Forecasting a real series from a window of its past (the Keras stock-forecaster workflow).

A model reads ``lookback`` steps of the feature columns and predicts the next ``horizon``
values of the target column at once (direct multi-step, ``readout="last"``, output
``[B, H]``). The data set is a registered name (``task.dataset=co2``) or a CSV
(``task.path=prices.csv task.target=Close task.time_column=Date``); see
:mod:`rnnlab.forecast` for the pipeline: missing values, transform, chronological split,
scaler fitted on the training span only, windows.

On the device: ``sample`` draws random training windows (``jax.random.randint`` into the
stored scaled series); ``eval_batch`` is every validation window and ``test_batch()`` every
test window, both fixed. ``loss`` is the MSE on scaled (and transformed) targets.

On the host: ``evaluate_forecasts(pred_NxH, split)`` maps the model's forecasts back to the
series' own units and returns RMSE/MAE/MASE/sMAPE overall and per step;
``baseline_table(split)`` scores statsforecast's naive, seasonal naive, drift, mean, AutoETS,
AutoARIMA and AutoTheta and a least-squares AR(p) on the same windows, each fitted on the
training span only (:mod:`rnnlab.forecast.baselines`).

Rolling origin (``folds = K``): the test span is cut into K consecutive blocks, one forecast
origin each (:func:`rnnlab.forecast.scaling.fold_spans`); fold ``k`` has its own training and
validation spans before its block, its own scaler fitted on its training span, its own
baseline fits. The run loop trains the network on fold ``fold`` (default: the last one,
whose block ends the series) and logs it; ``final_report`` then **retrains the network from
scratch** on every other fold, with the same config and seeds (through the loop's ``refit``),
and pools the K folds (:func:`rnnlab.forecast.evaluation.combine_folds`): mean ± std over
folds and seeds, the best baseline, the skill score and whether the gap beats the spread.

Metrics: ``loss`` (scaled MSE), ``mae`` (scaled MAE). Baselines: ``loss`` of the naive
(last value) forecast on the validation windows, in the same scaled space. Solved: never
(forecasting has no solved threshold; compare with the baselines instead).
"""

import dataclasses
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from rnnlab.forecast import baselines as baselines_lib
from rnnlab.forecast.baselines import naive
from rnnlab.forecast.data import MISSING_OPTIONS, check_unique, load_csv, load_dataset
from rnnlab.forecast.evaluation import combine_folds, summary_lines
from rnnlab.forecast.metrics import forecast_metrics
from rnnlab.forecast.plots import SERIES_KEY, series_record
from rnnlab.forecast.prepare import ForecastData, prepare
from rnnlab.forecast.scaling import SCALERS
from rnnlab.forecast.windows import TRANSFORMS
from rnnlab.tasks.base import Batch, Task, register_task, weighted_mean


@register_task("forecast")
@dataclasses.dataclass(frozen=True)
class ForecastTask(Task):
    """Attributes:
      dataset: registered data set name (:data:`rnnlab.forecast.DATASETS`), used when
        ``path`` is null.
      path: a CSV file to forecast instead of ``dataset``.
      target: the column to forecast; null: the data set's default (required with ``path``).
      features: input columns; null: the data set's defaults (with ``path``: the target).
      time_column: the CSV's date column (rows sorted by it); null: file order.
      lookback: L, input steps per window.
      horizon: H, steps forecast at once.
      val_fraction, test_fraction: span sizes as fractions of the rows.
      val_start, test_start: dates starting the spans instead of fractions (both or neither).
      scaler: minmax | standard | none, fitted on the training span only.
      transform: none | log | diff | log_diff, applied to every column.
      missing: error | interpolate | drop, for NaN values.
      season_length: m for seasonal naive and MASE; null: the data set's (CSV: 1).
      ar_order: p of the AR baseline; null: lookback.
      folds: K >= 1 forecast origins stepping through the test span (rolling origin).
      fold: the fold the logged training uses, 0..K-1; null: the last.
    """

    dataset: str | None = "sunspots"
    path: str | None = None
    target: str | None = None
    features: list[str] | None = None
    time_column: str | None = None
    lookback: int = 22
    horizon: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    val_start: str | None = None
    test_start: str | None = None
    scaler: str = "minmax"
    transform: str = "none"
    missing: str = "error"
    season_length: int | None = None
    ar_order: int | None = None
    folds: int = 1
    fold: int | None = None

    readout = "last"
    # MASE of the validation windows in the series' units (Hyndman & Koehler 2006, "Another
    # look at measures of forecast accuracy"): scale-free, so runs with other scalers,
    # transforms or data sets rank on one scale, unlike the model-space loss
    main_metric = "val_mase"

    def __post_init__(self):
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))  # hashable
            check_unique(self.features, "forecast task: features")
        for name, accepted in (("scaler", SCALERS), ("transform", TRANSFORMS),
                               ("missing", MISSING_OPTIONS)):
            if getattr(self, name) not in accepted:
                raise ValueError(f"forecast task: {name}={getattr(self, name)!r} is not "
                                 f"accepted; use one of {accepted}")
        for name in ("lookback", "horizon", "folds", "season_length"):
            value = getattr(self, name)
            if name == "season_length" and value is None:  # the data set's
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"forecast task: {name} must be an int >= 1"
                                 f"{' or null' if name == 'season_length' else ''}; "
                                 f"got {value!r}")
        try:
            data = prepare(self._load(), lookback=self.lookback, horizon=self.horizon,
                           target=self.target, features=self.features,
                           val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                           val_start=self.val_start, test_start=self.test_start,
                           scaler=self.scaler, transform=self.transform, missing=self.missing,
                           season_length=self.season_length, ar_order=self.ar_order,
                           folds=self.folds, fold=self.fold)
        except ValueError as err:  # the data library's messages name the option: say whose
            if str(err).startswith("forecast task:"):
                raise
            raise ValueError(f"forecast task: {err}") from err
        for split in ("train", "val", "test"):
            if data.num_windows(split) < 1:
                raise ValueError(f"forecast task: no {split} window in {data.name!r}")
        if data.season_length >= data.spans.train_end:  # MASE's in-sample seasonal naive scale
            raise ValueError(f"forecast task: season_length={data.season_length} must be "
                             f"shorter than the training span ({data.spans.train_end} rows of "
                             f"{data.name!r}): MASE scales by the seasonal naive error within it")
        # fail now, not after training, if a baseline cannot be made: statsforecast missing
        # (it names the extra to install) or too few training windows for AR(p)
        baselines_lib.require_statsforecast()
        baselines_lib.fit_ar(data.target_levels, data.ar_order, data.horizon,
                             data.spans.train_end)
        model_TxC = data.model_TxC.astype(np.float32)
        digest = hashlib.sha256(model_TxC.tobytes())
        for split in ("train", "val", "test"):
            digest.update(data.origins[split].tobytes())
        # Host-side data and device arrays are attributes, not fields: they stay out of the
        # config schema; __eq__/__hash__ add the data's fingerprint to the fields.
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_fingerprint", digest.hexdigest())
        object.__setattr__(self, "_inputs_TxF",
                           jnp.asarray(model_TxC[:, list(data.feature_index)]))
        object.__setattr__(self, "_target_T", jnp.asarray(model_TxC[:, data.target_index]))
        object.__setattr__(self, "_train_origins",
                           jnp.asarray(data.origins["train"].astype(np.int32)))
        object.__setattr__(self, "_batches", {s: self._fixed_batch(s) for s in ("val", "test")})

    def _load(self):
        if self.path is not None:
            default = next(f.default for f in dataclasses.fields(self) if f.name == "dataset")
            if self.dataset not in (None, default):
                raise ValueError(f"forecast task: path={self.path!r} and dataset="
                                 f"{self.dataset!r} name two series; give one of them (a path "
                                 f"is forecast instead of the dataset)")
            if self.target is None:
                raise ValueError(f"forecast task: path={self.path!r} needs target, the column "
                                 f"to forecast (task.target=...)")
            return load_csv(self.path, self.target, self.features, self.time_column,
                            missing=self.missing, season_length=self.season_length or 1)
        if self.dataset is None:
            raise ValueError("forecast task: set dataset (a registered name) or path (a CSV)")
        if self.time_column is not None:
            raise ValueError(f"forecast task: time_column={self.time_column!r} applies to "
                             f"CSV files (path) only; dataset={self.dataset!r} has its index")
        return load_dataset(self.dataset)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return (dataclasses.astuple(self) == dataclasses.astuple(other)
                and self._fingerprint == other._fingerprint)

    def __hash__(self):
        return hash((type(self), dataclasses.astuple(self), self._fingerprint))

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def data(self) -> ForecastData:
        """The host-side prepared series (windows, scaler, spans, inverse maps)."""
        return self._data

    @property
    def input_size(self) -> int:  # type: ignore[override]
        return len(self._data.feature_index)

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self.horizon

    @property
    def sequence_length(self) -> int:
        return self.lookback

    # ---- device side ----------------------------------------------------------------------
    def _gather(self, origins_B):
        offsets_L = jnp.arange(-self.lookback, 0, dtype=jnp.int32)
        steps_H = jnp.arange(self.horizon, dtype=jnp.int32)
        x_BxLxF = self._inputs_TxF[origins_B[:, None] + offsets_L[None, :]]
        y_BxH = self._target_T[origins_B[:, None] + steps_H[None, :]]
        return Batch(x_BxLxF, y_BxH, jnp.ones(y_BxH.shape, jnp.float32))

    def _fixed_batch(self, split: str) -> Batch:
        return self._gather(jnp.asarray(self._data.origins[split].astype(np.int32)))

    def sample(self, key, batch_size):
        """``batch_size`` training windows drawn uniformly with replacement."""
        n = self._train_origins.shape[0]
        i_B = jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)
        return self._gather(self._train_origins[i_B])

    def eval_batch(self, key, batch_size=None):
        """Every validation window (key and batch size are unused: the batch is fixed)."""
        return self._batches["val"]

    def test_batch(self) -> Batch:
        """Every test window, in time order."""
        return self._batches["test"]

    def loss(self, out, batch):
        if out.shape != batch.y.shape:
            raise ValueError(f"forecast outputs must be [B, H] = {batch.y.shape}; "
                             f"got {out.shape}")
        return weighted_mean((out.astype(jnp.float32) - batch.y) ** 2, batch.weight)

    def metrics(self, out, batch):
        return {"loss": self.loss(out, batch),
                "mae": weighted_mean(jnp.abs(out.astype(jnp.float32) - batch.y), batch.weight)}

    # ---- host side ------------------------------------------------------------------------
    def evaluate_forecasts(self, pred_scaled_NxH, split: str = "test") -> dict[str, float]:
        """RMSE, MAE, MASE, sMAPE (overall and ``_h1``.. per step) in the series' own units
        of the model's forecasts for ``split``'s windows (``[N, H]``, in window order)."""
        return self._data.evaluate(np.asarray(pred_scaled_NxH), split)

    def baseline_table(self, split: str = "test") -> pd.DataFrame:
        """Naive, seasonal naive, drift, mean and AR(p) on the same windows, same metrics."""
        return self._data.baseline_table(split)

    def baselines(self):
        """The naive forecast (the last value) of every validation window: its model-space
        MSE beside ``loss``, and its scores in the series' units beside ``val_rmse`` ..
        ``val_smape`` (its ``val_mase`` is near 1 for a series without a season)."""
        data = self._data
        naive_levels = naive(data.target_levels, data.origins["val"], self.horizon)
        naive_NxH = data.to_model(naive_levels, "val")
        _, y_NxH = data.windows("val")
        units = forecast_metrics(data.actuals("val"), naive_levels,
                                 data.target_levels[:data.spans.train_end], data.season_length)
        return {"loss": float(np.mean((naive_NxH - y_NxH) ** 2)),
                **{f"val_{n}": float(units[n]) for n in ("rmse", "mae", "mase", "smape")}}

    def final_metrics(self, trainer, state, alive) -> dict[str, Any]:
        """``val_rmse``, ``val_mae``, ``val_mase``, ``val_smape``: each seed's forecasts of
        every validation window, scored in the series' own units (``evaluate_forecasts``;
        MASE scaled by the training span's in-sample seasonal naive MAE). ``[S]`` arrays, NaN
        for a diverged seed."""
        pred_SxNxH = _predict(trainer, state, self.eval_batch(None))
        names = ("rmse", "mae", "mase", "smape")
        out = {f"val_{n}": np.full(len(pred_SxNxH), np.nan) for n in names}
        for i, (pred, ok) in enumerate(zip(pred_SxNxH, np.asarray(alive, bool), strict=True)):
            if ok:
                scores = self.evaluate_forecasts(pred, "val")
                for n in names:
                    out[f"val_{n}"][i] = scores[n]
        return out

    def final_report(self, trainer, state, alive, refit=None) -> dict[str, Any]:
        """Test-span accuracy in the series' units, pooled over the folds.

        For each fold: each seed's metrics (``None`` for a diverged seed) and every
        baseline's, on that fold's test windows. This task's fold is scored with ``state``
        (vmapped over seeds); every other fold is first trained from scratch by
        ``refit(task) -> (trainer, state, alive)`` (the run loop's; same config and seeds).
        Returns ``{"forecast": ...}``: :func:`rnnlab.forecast.evaluation.combine_folds`'s
        pooled results (``model``, ``model_std``, ``per_seed`` over folds x seeds,
        ``baselines``, ``baselines_std``, ``comparison``, ``per_fold``), and under ``series``
        this fold's forecasts (:func:`rnnlab.forecast.plots.series_record`). Prints the
        comparison table.

        Raises:
          ValueError: ``folds > 1`` and no ``refit`` to train the other folds with.
        """
        data = self._data
        reports = {data.fold: self._fold_report(trainer, state, alive)}
        for k in range(data.folds):
            if k in reports:
                continue
            if refit is None:
                raise ValueError(f"forecast task: folds={data.folds} needs final_report(..., "
                                 f"refit=...) to train the network on the other folds")
            task_k = dataclasses.replace(self, fold=k)
            trainer_k, state_k, alive_k = refit(task_k)
            reports[k] = task_k._fold_report(trainer_k, state_k, alive_k)
        folds = [reports[k] for k in range(data.folds)]
        series = folds[data.fold].pop(SERIES_KEY)
        for r in folds:
            r.pop(SERIES_KEY, None)
        out = {"split": "test", "fold_training": "retrained from scratch per fold, same seeds",
               **combine_folds(folds), SERIES_KEY: series}
        for line in summary_lines(out, units=f"{data.name} {data.target}"):
            print(f"[rnnlab] {line}")
        return {"forecast": out}

    def _fold_report(self, trainer, state, alive) -> dict[str, Any]:
        data = self._data
        pred_SxNxH = _predict(trainer, state, self.test_batch())
        alive = np.asarray(alive, dtype=bool)
        per_seed = [self.evaluate_forecasts(pred, "test") if ok else None
                    for pred, ok in zip(pred_SxNxH, alive, strict=True)]
        notes: list[str] = []
        table = data.baseline_table("test", notes)
        levels_SxNxH = np.stack([data.to_levels(pred, "test") for pred in pred_SxNxH])
        index = np.asarray(data.index)
        start, stop = data.spans.bounds("test")
        return {
            "fold": data.fold, "train_rows": data.spans.train_end,
            "test_rows": [start, stop],
            "test_time": [str(index[start]), str(index[stop - 1])],
            "windows": data.num_windows("test"), "per_seed": per_seed,
            "baselines": {name: row.to_dict() for name, row in table.iterrows()},
            "baseline_notes": notes,
            # the forecasts themselves, for rnnlab.report's forecast-vs-truth figure
            SERIES_KEY: series_record(data, levels_SxNxH, alive, "test")}

    def label(self) -> str:
        """``forecast(SOURCE: field=value, ...)`` with the fields that differ from defaults."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if f.name not in ("dataset", "path") and getattr(self, f.name) != f.default]
        # the file's name: a title, not a locator (an installed preset's CSV lies deep in
        # site-packages; the full path stays in config.yaml)
        source = os.path.basename(self.path) if self.path is not None else self.dataset
        inside = f"{source}: {', '.join(changed)}" if changed else f"{source}"
        return f"{self.registered_name}({inside})"

    def describe(self) -> dict[str, Any]:
        data = self._data
        return {**super().describe(), "source": data.name, "target": data.target,
                "features": list(data.features), "season_length": data.season_length,
                "rows": int(data.levels_TxC.shape[0]), "folds": data.folds, "fold": data.fold,
                **{f"windows/{s}": data.num_windows(s) for s in ("train", "val", "test")}}


def _predict(trainer, state, batch) -> np.ndarray:
    """Every seed's forecasts of ``batch``'s windows, ``[S, N, H]`` in the model's space
    (``state`` vmapped over seeds)."""
    return np.asarray(jax.jit(jax.vmap(lambda params: trainer.apply(params, batch)))(
        state.params))
