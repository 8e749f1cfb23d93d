"""Named real series that load offline, user CSVs, and synthetic series for tests.

A :class:`Series` is a DataFrame with a time index (a ``DatetimeIndex`` for real data, a
``RangeIndex`` named ``step`` for synthetic series and CSVs without a time column), its
default target column, the feature columns a model reads, its frequency (a pandas offset
alias, ``None`` when irregular or unknown) and its season length ``m`` (used by the seasonal
naive baseline and by MASE; ``1`` means non-seasonal).

Shipped data sets (see ``rnnlab/data/README.md`` for sources and licences):

==============  =========  ====  ===========  ==================================================
name            frequency  m     target       notes
==============  =========  ====  ===========  ==================================================
sunspots        YS         11    SUNACTIVITY  yearly Wolf numbers 1700-2008 (statsmodels); m=11
                                              follows the convention of the ~11-year Schwabe
                                              cycle, whose length varies (9-14 years)
nile            YS         1     volume       Nile flow at Aswan 1871-1970 (statsmodels)
co2             MS         12    co2          Mauna Loa weekly CO2 (statsmodels), 59 missing weeks
                                              interpolated linearly in time, then monthly means
macrodata       QS         4     realgdp      US macro 1959Q1-2009Q3 (statsmodels), 12 columns;
                                              the series are seasonally adjusted, m=4 follows the
                                              quarterly convention
elnino          MS         12    sst          Nino 1+2 sea-surface temperature 1950-2010
                                              (statsmodels, reshaped from year x month)
goog            B          1     Close        daily GOOG OHLCV 2004-08-19..2008-10-14 (shipped CSV
                                              from matplotlib's sample data); trading days, so
                                              exchange holidays are absent from the business days
air_passengers  MS         12    passengers   monthly international airline passengers
                                              (thousands) 1949-01..1960-12, Box & Jenkins
                                              series G, from statsforecast.utils.AirPassengers
                                              (needs the ``forecast`` extra)
sine            None       20    value        synthetic: sine of period 20 plus Gaussian noise
linear          None       1     value        synthetic: 10, 20, ..., 90 (the split_sequence notes)
==============  =========  ====  ===========  ==================================================

Missing values are handled by one rule, ``missing``: ``error`` (default; the message names the
column, the count and this option), ``interpolate`` (linear in time between valid values; rows
before the first or after the last valid value are dropped) or ``drop`` (rows with a missing
value in a used column are dropped). Non-numeric values are always an error.
"""

import dataclasses
import importlib.resources
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

MISSING_OPTIONS = ("error", "interpolate", "drop")


@dataclasses.dataclass(frozen=True, eq=False)
class Series:
    """A loaded series.

    Attributes:
      name: data set name or the CSV path.
      frame: numeric columns over a time index (sorted, unique).
      target: default target column.
      features: default input columns (the target's own history included when listed).
      frequency: pandas offset alias of the index (``"MS"``, ``"YS"``, ...) or ``None``.
      season_length: m, the seasonal period in rows (1: non-seasonal).
      source: one line naming where the numbers come from.
    """

    name: str
    frame: pd.DataFrame
    target: str
    features: tuple[str, ...]
    frequency: str | None
    season_length: int
    source: str = ""

    def __post_init__(self):
        check_columns(self.frame, [self.target, *self.features], self.name)
        if not isinstance(self.season_length, int) or self.season_length < 1:
            raise ValueError(f"{self.name}: season_length must be an int >= 1; "
                             f"got {self.season_length!r}")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Callable[[], pd.DataFrame]
    target: str
    features: tuple[str, ...]
    frequency: str | None
    season_length: int
    source: str


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, target: str, frequency: str | None, season_length: int,
                     source: str, features: Sequence[str] | None = None):
    """Registers ``loader() -> DataFrame`` (time index, numeric columns) under ``name``."""

    def wrap(loader):
        if name in DATASETS:
            raise ValueError(f"data set name {name!r} is already registered")
        DATASETS[name] = DatasetInfo(name, loader, target, tuple(features or (target,)),
                                     frequency, season_length, source)
        return loader

    return wrap


def load_dataset(name: str) -> Series:
    """The registered data set ``name`` as a :class:`Series` (offline)."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not a registered data set; registered: "
                         f"{sorted(DATASETS)} (or a CSV file: path=...)")
    info = DATASETS[name]
    return Series(name, info.loader(), info.target, info.features, info.frequency,
                  info.season_length, info.source)


# ---- checks shared by every loader ------------------------------------------------------------
def _where(index: pd.Index, at) -> str:
    """A row of a loaded series for a message: its date (without a midnight time of day), or,
    for rows in file order, its data row counted from 0 after the header."""
    if isinstance(index, pd.DatetimeIndex):
        stamp = pd.Timestamp(at)
        return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)
    return f"data row {at} (counting from 0 after the header)"


def check_unique(features: Sequence[str], what: str = "features") -> None:
    """Raises when a column is listed twice (``what`` names the list in the message)."""
    twice = [f for f in dict.fromkeys(features) if list(features).count(f) > 1]
    if twice:
        raise ValueError(f"{what} lists {twice[0]!r} more than once: {list(features)}")


def check_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raises naming the first missing column and listing the available ones."""
    available = [str(c) for c in frame.columns]
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"column {column!r} not found in {source}; "
                             f"available columns: {available}")


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> pd.DataFrame:
    """``frame[columns]`` as float64; non-numeric entries raise, naming column and count."""
    check_columns(frame, columns, source)
    out = {}
    for column in dict.fromkeys(columns):
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna()
        if bad.any():
            examples = list(dict.fromkeys(raw[bad].astype(str)))[:3]
            raise ValueError(f"column {column!r} in {source} has {int(bad.sum())} non-numeric "
                             f"value(s), e.g. {examples}")
        infinite = np.isinf(values.to_numpy(np.float64))
        if infinite.any():
            first = _where(frame.index, frame.index[infinite][0])
            raise ValueError(f"column {column!r} in {source} has {int(infinite.sum())} infinite "
                             f"value(s), the first at {first}; the values must be finite (NaN "
                             f"counts as missing: task.missing=...)")
        out[column] = values.astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def handle_missing(frame: pd.DataFrame, missing: str, source: str) -> pd.DataFrame:
    """Applies the ``missing`` rule (see the module docstring) to every column of ``frame``."""
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing={missing!r} is not accepted; use one of {MISSING_OPTIONS}")
    counts = frame.isna().sum()
    if not counts.any():
        return frame
    if missing == "error":
        column = str(counts[counts > 0].index[0])
        first = _where(frame.index, frame.index[frame[column].isna().to_numpy()][0])
        raise ValueError(f"column {column!r} in {source} has {int(counts[column])} missing "
                         f"(NaN) value(s), the first at {first}; set missing=interpolate or "
                         f"missing=drop (task.missing=...), or clean the data")
    if missing == "drop":
        return frame.dropna()
    method = "time" if isinstance(frame.index, pd.DatetimeIndex) else "linear"
    filled = frame.interpolate(method=method, limit_area="inside")
    return filled.dropna()


# ---- user CSVs --------------------------------------------------------------------------------
def _times(column: pd.Series, name: str, path: Path) -> pd.Series:
    """A CSV's time column as dates (NaT where unreadable): strings through
    ``pd.to_datetime``; whole numbers of four digits as years; other numbers raise."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return pd.to_datetime(column, errors="coerce")
    values = column.to_numpy(np.float64)
    years = np.isfinite(values) & (values == np.round(values)) & (values >= 1000) & (
        values <= 9999)
    if not years.all():
        example = column[~years].iloc[0]
        raise ValueError(f"time_column {name!r} in {path} holds numbers that are not years "
                         f"(e.g. {example}): write dates (2020-01-31), or leave time_column "
                         f"null to keep the rows in file order")
    return pd.to_datetime(column.astype(np.int64).astype(str), format="%Y")


def load_csv(path: str | Path, target: str, features: Sequence[str] | None = None,
             time_column: str | None = None, *, missing: str = "error",
             frequency: str | None = None, season_length: int = 1) -> Series:
    """A series from any CSV file.

    Args:
      path: the CSV file (header row required).
      target: the column to forecast.
      features: input columns; ``None``: the target alone.
      time_column: a column of dates, parsed with ``pd.to_datetime``, or of whole numbers of
        four digits, read as years (``1871`` is 1871-01-01); rows are sorted by it and
        duplicate times raise; other numbers raise (pandas would read them as nanoseconds
        since 1970). ``None``: rows in file order, indexed ``0, 1, ...``.
      missing: ``error`` | ``interpolate`` | ``drop`` (module docstring).
      frequency: optional pandas offset alias recorded with the series.
      season_length: m for the seasonal naive baseline and MASE (1: non-seasonal).
    """
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing={missing!r} is not accepted; use one of {MISSING_OPTIONS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        raw = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file {path} is empty: it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"CSV file {path} cannot be read as CSV: {err}") from None
    if raw.empty:
        raise ValueError(f"CSV file {path} has a header but no data rows")
    features = tuple(features) if features is not None else (target,)
    check_unique(features)
    columns = [target, *features]
    check_columns(raw, [*columns, *([time_column] if time_column else [])], str(path))
    if time_column is not None:
        times = _times(raw[time_column], time_column, path)
        if times.isna().any():
            bad = raw[time_column][times.isna()].astype(str).tolist()[:3]
            raise ValueError(f"time_column {time_column!r} in {path} has "
                             f"{int(times.isna().sum())} value(s) that are not dates, e.g. {bad}")
        raw = raw.set_index(pd.DatetimeIndex(times, name=time_column)).sort_index(kind="stable")
        duplicated = raw.index.duplicated()
        if duplicated.any():
            raise ValueError(f"time_column {time_column!r} in {path} has "
                             f"{int(duplicated.sum())} duplicate time(s), e.g. "
                             f"{raw.index[duplicated][0]}")
    else:
        raw = raw.set_axis(pd.RangeIndex(len(raw), name="step"), axis=0)
    frame = handle_missing(numeric_columns(raw, columns, str(path)), missing, str(path))
    return Series(str(path), frame, target, features, frequency, season_length, f"CSV {path}")


# ---- synthetic series -------------------------------------------------------------------------
def sine_series(length: int = 400, period: float = 20.0, noise: float = 0.1,
                seed: int = 0) -> Series:
    """``sin(2 pi t / period) + noise * N(0, 1)`` with a seeded NumPy generator."""
    t = np.arange(length, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = np.sin(2.0 * np.pi * t / period) + noise * rng.standard_normal(length)
    frame = pd.DataFrame({"value": values}, index=pd.RangeIndex(length, name="step"))
    return Series("sine", frame, "value", ("value",), None, max(round(period), 1),
                  f"synthetic sine, period {period}, noise {noise}, seed {seed}")


def linear_series(start: float = 10.0, stop: float = 90.0, step: float = 10.0) -> Series:
    """``10, 20, ..., 90``: the example series of the ``split_sequence`` notes."""
    values = np.arange(start, stop + step / 2, step, dtype=np.float64)
    frame = pd.DataFrame({"value": values}, index=pd.RangeIndex(len(values), name="step"))
    return Series("linear", frame, "value", ("value",), None, 1, "synthetic linear series")


# ---- registered data sets ---------------------------------------------------------------------
def _yearly_index(years) -> pd.DatetimeIndex:
    years = np.asarray(years, dtype=np.int64)
    return pd.DatetimeIndex(pd.to_datetime({"year": years, "month": 1, "day": 1}), name="date")


def _data_file(name: str) -> Path:
    return Path(str(importlib.resources.files("rnnlab") / "data" / name))


@register_dataset("sunspots", target="SUNACTIVITY", frequency="YS", season_length=11,
                  source="statsmodels.datasets.sunspots (NOAA NGDC; public domain)")
def _sunspots() -> pd.DataFrame:
    from statsmodels.datasets import sunspots

    df = sunspots.load_pandas().data
    return df[["SUNACTIVITY"]].set_axis(_yearly_index(df["YEAR"]), axis=0)


@register_dataset("nile", target="volume", frequency="YS", season_length=1,
                  source="statsmodels.datasets.nile (Cobb 1978; public domain)")
def _nile() -> pd.DataFrame:
    from statsmodels.datasets import nile

    df = nile.load_pandas().data
    return df[["volume"]].set_axis(_yearly_index(df["year"]), axis=0)


@register_dataset("co2", target="co2", frequency="MS", season_length=12,
                  source="statsmodels.datasets.co2 (Scripps/CDIAC Mauna Loa; public domain)")
def _co2() -> pd.DataFrame:
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    # 59 of 2284 weeks are missing: interpolate them linearly in time (explicitly, here, so
    # no month mean is taken over a gap), then average the weeks of each month.
    monthly = weekly.interpolate(method="time").resample("MS").mean()
    return monthly.to_frame("co2").rename_axis("date")


MACRO_COLUMNS = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1",
                 "tbilrate", "unemp", "pop", "infl", "realint")


@register_dataset("macrodata", target="realgdp", frequency="QS", season_length=4,
                  features=MACRO_COLUMNS,
                  source="statsmodels.datasets.macrodata (FRED, BLS; public domain)")
def _macrodata() -> pd.DataFrame:
    from statsmodels.datasets import macrodata

    df = macrodata.load_pandas().data
    months = (df["quarter"].to_numpy(np.int64) - 1) * 3 + 1
    index = pd.DatetimeIndex(pd.to_datetime({"year": df["year"].to_numpy(np.int64),
                                             "month": months, "day": 1}), name="date")
    return df[list(MACRO_COLUMNS)].set_axis(index, axis=0)


@register_dataset("elnino", target="sst", frequency="MS", season_length=12,
                  source="statsmodels.datasets.elnino (NOAA ERSST.v3b Nino 1+2; public domain)")
def _elnino() -> pd.DataFrame:
    from statsmodels.datasets import elnino

    df = elnino.load_pandas().data
    months = df.drop(columns="YEAR").to_numpy(np.float64)  # [years, 12], Jan..Dec
    index = pd.date_range(f"{int(df['YEAR'].iloc[0])}-01-01", periods=months.size, freq="MS",
                          name="date")
    return pd.DataFrame({"sst": months.reshape(-1)}, index=index)


OHLCV = ("Open", "High", "Low", "Close", "Volume")


@register_dataset("goog", target="Close", frequency="B", season_length=1, features=OHLCV,
                  source="rnnlab/data/goog.csv from matplotlib sample_data/goog.npz "
                         "(Yahoo! Finance prices)")
def _goog() -> pd.DataFrame:
    df = pd.read_csv(_data_file("goog.csv"), parse_dates=["Date"], index_col="Date")
    return df[list(OHLCV)].astype(np.float64)


@register_dataset("air_passengers", target="passengers", frequency="MS", season_length=12,
                  source="statsforecast.utils.AirPassengers (Box, Jenkins & Reinsel, Time "
                         "Series Analysis, series G)")
def _air_passengers() -> pd.DataFrame:
    try:
        from statsforecast.utils import AirPassengers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('data set air_passengers ships with statsforecast: pip install '
                          '"rnnlab[forecast]"') from err
    values = np.asarray(AirPassengers, dtype=np.float64)
    index = pd.date_range("1949-01-01", periods=values.size, freq="MS", name="date")
    return pd.DataFrame({"passengers": values}, index=index)


@register_dataset("sine", target="value", frequency=None, season_length=20,
                  source="synthetic (rnnlab.forecast.data.sine_series, seed 0)")
def _sine() -> pd.DataFrame:
    return sine_series().frame


@register_dataset("linear", target="value", frequency=None, season_length=1,
                  source="synthetic (rnnlab.forecast.data.linear_series)")
def _linear() -> pd.DataFrame:
    return linear_series().frame
