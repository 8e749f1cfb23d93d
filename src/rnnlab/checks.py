"""Checks of configuration values, run when a run is built (before anything is compiled or
written). Each failure raises :class:`ConfigError` naming the field, the value received and
what is accepted, e.g. ``optim.learning_rate must be a finite number > 0; got -1.0``."""

import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot run. The command line prints its message alone (no
    traceback) and exits with status 2; inside a sweep the job records it and the sweep goes
    on."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(field: str, value, minimum: int | None = None, maximum: int | None = None,
              *, optional: bool = False, why: str = "") -> None:
    """``value`` must be an int in ``[minimum, maximum]`` (``None`` too when ``optional``)."""
    if optional and value is None:
        return
    if (not _is_int(value) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bounds = [f">= {minimum}" if minimum is not None else "",
                  f"<= {maximum}" if maximum is not None else ""]
        accepted = "an int " + " and ".join(b for b in bounds if b)
        if optional:
            accepted += ", or null"
        raise ConfigError(f"{field} must be {accepted.strip()}{why}; got {value!r}")


def check_number(field: str, value, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, optional: bool = False,
                 why: str = "") -> None:
    """``value`` must be a finite number in the interval (open ends where asked)."""
    if optional and value is None:
        return
    ok = _is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        if lo and hi:
            accepted = f"a finite number in {lo}, {hi}"
        elif lo:
            accepted = f"a finite number {'>' if low_open else '>='} {low}"
        elif hi:
            accepted = f"a finite number {'<' if high_open else '<='} {high}"
        else:
            accepted = "a finite number"
        if optional:
            accepted += ", or null"
        raise ConfigError(f"{field} must be {accepted}{why}; got {value!r}")


def check_choice(field: str, value, accepted: Iterable[Any]) -> None:
    accepted = list(accepted)
    if value not in accepted:
        raise ConfigError(f"{field}={value!r} is not accepted; use one of {accepted}")
