"""Chronological splits and scalers fitted on the training span only.

The Keras notes fit ``MinMaxScaler`` on the whole series before splitting it, so the test
span's minimum and maximum leak into the training inputs. Here a scaler is fitted by
:func:`fit_scaler` on the rows of the training span alone (``fit_on="train"``, the only value
accepted: there is no way to fit on all data), and the same statistics transform every span.

Splits are spans of rows ``[0, train_end)``, ``[train_end, val_end)``, ``[val_end, T)``. A
window belongs to the span that holds *all* of its targets; validation and test windows may
read their inputs from earlier spans (the history known at forecast time), training windows
read nothing after ``train_end``.
"""

import dataclasses
from typing import ClassVar

import numpy as np
import pandas as pd

from rnnlab.forecast.windows import window_origins

SPLITS = ("train", "val", "test")
SCALERS = ("minmax", "standard", "none")


@dataclasses.dataclass(frozen=True)
class Spans:
    """Row boundaries of the three spans: train ``[0, train_end)``, val ``[train_end,
    val_end)``, test ``[val_end, length)``."""

    train_end: int
    val_end: int
    length: int

    def bounds(self, split: str) -> tuple[int, int]:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not accepted; use one of {SPLITS}")
        return {"train": (0, self.train_end), "val": (self.train_end, self.val_end),
                "test": (self.val_end, self.length)}[split]

    def sizes(self) -> dict[str, int]:
        return {s: b - a for s, (a, b) in ((s, self.bounds(s)) for s in SPLITS)}

    def origins(self, split: str, lookback: int, horizon: int, offset: int = 0) -> np.ndarray:
        """Origins of the windows whose targets all lie in ``split``; training windows also
        keep their inputs inside the training span (from row ``offset``, the first row a
        transform defines)."""
        start, stop = self.bounds(split)
        if split == "train":
            return window_origins(offset, stop, lookback, horizon)
        return np.arange(start, max(stop - horizon + 1, start), dtype=np.int64)


def split_spans(length: int, *, lookback: int, horizon: int, val_fraction: float = 0.1,
                test_fraction: float = 0.2, index: pd.Index | None = None,
                val_start: str | None = None, test_start: str | None = None,
                offset: int = 0, name: str = "series") -> Spans:
    """Chronological spans by fractions of the rows, or by dates.

    Fractions: the last ``round(test_fraction * T)`` rows are the test span and the
    ``round(val_fraction * T)`` rows before them the validation span. Dates (both
    ``val_start`` and ``test_start``, on a ``DatetimeIndex``): each span starts at the first
    row at or after its date.

    Raises ``ValueError`` when a validation or test span is shorter than ``horizon`` (no
    window fits) or the series is shorter than ``offset + lookback + horizon`` training rows
    plus the validation and test spans.
    """
    if (val_start is None) != (test_start is None):
        raise ValueError(f"give both val_start and test_start, or neither; got "
                         f"val_start={val_start!r}, test_start={test_start!r}")
    if val_start is not None:
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError(f"{name}: date splits (val_start, test_start) need a time index; "
                             f"set time_column, or split by val_fraction and test_fraction")
        stamps = {}
        for field, value in (("val_start", val_start), ("test_start", test_start)):
            try:
                stamps[field] = pd.Timestamp(value)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{field}={value!r} is not a date (e.g. '1950' or "
                                 f"'1950-06-30'): {err}") from err
        train_end = int(index.searchsorted(stamps["val_start"]))
        val_end = int(index.searchsorted(stamps["test_start"]))
        if val_end < train_end:
            raise ValueError(f"test_start={test_start!r} is before val_start={val_start!r}")
        how = f"val_start={val_start!r}, test_start={test_start!r}"
    else:
        for field, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"{field} must be in (0, 1); got {value!r}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction must be < 1; got "
                             f"{val_fraction} + {test_fraction}")
        n_test = round(test_fraction * length)
        n_val = round(val_fraction * length)
        val_end, train_end = length - n_test, length - n_test - n_val
        how = f"val_fraction={val_fraction}, test_fraction={test_fraction}"
    n_val, n_test = val_end - train_end, length - val_end
    # the length check comes first, with spans of at least one window each, so that a series
    # too short for the lookback names the lookback rather than an empty span
    parts = [(f"lookback={lookback}", lookback), (f"horizon={horizon}", horizon)]
    parts += [(f"differencing={offset}", offset)] if offset else []
    parts += [("validation span", max(n_val, horizon)), ("test span", max(n_test, horizon))]
    needed = sum(n for _, n in parts)
    if length < needed:
        raise ValueError(f"{name} is too short: {length} rows; needs at least "
                         f"{' + '.join(p for p, _ in parts)} = "
                         f"{' + '.join(str(n) for _, n in parts)} = {needed} rows ({how}); "
                         f"lower lookback or use a longer series")
    for span, n in (("validation", n_val), ("test", n_test)):
        if n < horizon:
            raise ValueError(f"{name}: the {span} span has {n} rows ({how}, {length} rows); "
                             f"it needs at least horizon={horizon} rows for one window")
    return Spans(train_end, val_end, length)


def fold_spans(spans: Spans, folds: int, *, lookback: int, horizon: int, offset: int = 0,
               name: str = "series") -> list[Spans]:
    """Rolling-origin evaluation (time-series cross-validation; Tashman 2000, Hyndman &
    Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., 5.10): ``folds`` forecast
    origins stepping through the test span.

    The test span ``[val_end, T)`` is cut into ``folds`` consecutive blocks of (nearly) equal
    length (``np.array_split``: the first ``n_test % folds`` blocks are one row longer). Fold
    ``k`` with block ``[a, b)`` has the spans train ``[0, a - n_val)``, validation
    ``[a - n_val, a)`` (as long as the original one) and test ``[a, b)``, and ``length = b``:
    rows after its test block do not exist for it. ``folds = 1`` returns ``[spans]``; the last
    fold is always the original split's end. A window belongs to the block that holds all its
    targets, so with horizon ``H`` each block has ``len - H + 1`` test windows.

    Raises ``ValueError`` naming ``folds`` when it is not an int >= 1, when a block is shorter
    than ``horizon`` or when the first fold's training span has no training window.
    """
    if not isinstance(folds, int | np.integer) or isinstance(folds, bool) or folds < 1:
        raise ValueError(f"folds must be an int >= 1; got {folds!r}")
    n_val, n_test = spans.val_end - spans.train_end, spans.length - spans.val_end
    if n_test // folds < horizon:
        raise ValueError(f"{name}: folds={folds} cuts the test span of {n_test} rows into "
                         f"blocks of {n_test // folds} rows, fewer than horizon={horizon}; use "
                         f"at most {max(n_test // horizon, 1)} folds or a larger test_fraction")
    out = []
    for block in np.array_split(np.arange(spans.val_end, spans.length), folds):
        a, b = int(block[0]), int(block[-1]) + 1
        out.append(Spans(a - n_val, a, b))
    first_train = out[0].train_end - offset - lookback - horizon + 1
    if first_train < 1:
        raise ValueError(f"{name}: with folds={folds} the first fold's training span has "
                         f"{out[0].train_end} rows, too few for one window of lookback + "
                         f"horizon = {lookback} + {horizon} (differencing offset {offset}); "
                         f"use fewer folds")
    return out


# ---- scalers ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Scaler:
    """Per-column affine map ``scaled = (x - shift) / scale``, fitted on the training span.

    Columns constant over the training span get ``scale = 1`` (as scikit-learn does).
    """

    shift: np.ndarray
    scale: np.ndarray
    kind: ClassVar[str] = "none"

    def transform(self, x, column: int | None = None) -> np.ndarray:
        """Scales ``x[..., F]`` (all columns) or, with ``column``, an array of that column."""
        shift, scale = self._stats(column)
        return (np.asarray(x, dtype=np.float64) - shift) / scale

    def inverse_transform(self, x, column: int | None = None) -> np.ndarray:
        shift, scale = self._stats(column)
        return np.asarray(x, dtype=np.float64) * scale + shift

    def _stats(self, column):
        if column is None:
            return self.shift, self.scale
        return self.shift[column], self.scale[column]


class IdentityScaler(Scaler):
    kind = "none"


class MinMaxScaler(Scaler):
    """To ``[0, 1]`` over the training span: ``(x - min) / (max - min)``."""

    kind = "minmax"


class StandardScaler(Scaler):
    """Zero mean, unit (population) standard deviation over the training span."""

    kind = "standard"


def _fit_stats(kind: str, x_TxF: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "minmax":
        shift, scale = np.min(x_TxF, axis=0), np.ptp(x_TxF, axis=0)
    elif kind == "standard":
        shift, scale = np.mean(x_TxF, axis=0), np.std(x_TxF, axis=0)
    else:
        shift, scale = np.zeros(x_TxF.shape[1]), np.ones(x_TxF.shape[1])
    return shift, np.where(scale > 0, scale, 1.0)


SCALER_CLASSES = {"minmax": MinMaxScaler, "standard": StandardScaler, "none": IdentityScaler}


def fit_scaler(kind: str, values_TxF, spans: Spans, *, fit_on: str = "train",
               offset: int = 0) -> Scaler:
    """Fits a ``kind`` scaler on rows ``[offset, spans.train_end)`` of ``values_TxF``.

    Args:
      kind: ``minmax`` | ``standard`` | ``none``.
      values_TxF: the whole (transformed) series; only its training rows are read.
      spans: the chronological split.
      fit_on: ``"train"``, the only accepted value; named so the choice is visible where
        the scaler is made. Fitting on validation or test rows would leak them into training.
      offset: leading rows a transform left undefined (differencing).
    """
    if kind not in SCALER_CLASSES:
        raise ValueError(f"scaler={kind!r} is not accepted; use one of {SCALERS}")
    if fit_on != "train":
        raise ValueError(f"fit_on={fit_on!r} is not accepted: scalers are fitted on the "
                         f"training span only (fit_on='train'), so no validation or test value "
                         f"leaks into training")
    x = np.asarray(values_TxF, dtype=np.float64)[offset:spans.train_end]
    if x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"the training span rows [{offset}, {spans.train_end}) must be "
                         f"non-empty and finite to fit a scaler")
    shift, scale = _fit_stats(kind, x)
    return SCALER_CLASSES[kind](shift, scale)
