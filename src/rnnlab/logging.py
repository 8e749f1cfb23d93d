"""One logger interface, several sinks: the local run folder (always) and W&B.

The run folder (Hydra's output folder) holds:

* ``config.yaml``: the resolved config;
* ``metrics.jsonl``: one JSON object per (step, seed, split) with the split's metrics,
  flushed after every chunk, so a run that fails later keeps what it logged;
* ``gradients.npz``: ``steps [M]`` and, per curve ``NAME`` (``layer_0/h``...), arrays
  ``NAME/mean`` and ``NAME/std`` of shape ``[M, S, T]`` (measurements x seeds x time);
* ``events.jsonl``: divergence and other notable events;
* ``summary.json``: final metrics per seed, their mean and std, the baselines, status;
  written last (after the figures and W&B), so a folder with one holds a run that is over;
* plots (``learning_curve.png``, ``gradients.png``) when ``logger.plots``.

W&B: one W&B run per config (the seeds of a config train in one program), in the config's
``group`` (by default the sweep folder's name), with metrics keyed ``SPLIT/METRIC/seed_K`` and
their seed mean ``SPLIT/METRIC``; at the end a ``results`` table (metrics beside their
baselines), gradient curves as line charts and the run folder's figures (:class:`WandbSink`).
The default mode is ``offline``: no login, no prompt, no network at all; runs sync later with
``wandb sync``. Online, the run says at once that it contacts the server and waits at most
``logger.wandb.init_timeout`` seconds. Any W&B failure is reported once and logging continues
in the run folder.
"""

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

WANDB_MODES = ("offline", "online", "disabled")


def _scalar(value) -> float | None:
    value = float(np.asarray(value))
    return value if math.isfinite(value) else None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return _jsonable(arr.tolist()) if arr.ndim else _jsonable(arr.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


class Sink:
    """Interface of a logging sink. Metrics arrive as ``{name: [S]}`` arrays (one per seed)."""

    def start(self, config: dict, info: dict) -> None: ...

    def log(self, step: int, split: str, metrics: dict[str, np.ndarray], seeds: list[int]): ...

    def log_gradients(self, step: int, curves: dict[str, dict[str, np.ndarray]],
                      seeds: list[int]): ...

    def event(self, kind: str, **fields) -> None: ...

    def finish(self, summary: dict) -> None: ...

    def commit(self) -> None:
        """Called after every sink's :meth:`finish`: the run's last write (the local sink's
        ``summary.json``, which marks the run over)."""

    def position(self) -> dict:
        """Where this sink stands, JSON-able, saved with each checkpoint."""
        return {}

    def rewind(self, position: dict, step: int) -> None:
        """Back to ``position`` (from :meth:`position`) after a resumption from ``step``:
        nothing logged after the checkpoint remains."""


class LocalSink(Sink):
    """Writes the run folder described in the module docstring."""

    def __init__(self, run_dir: str | os.PathLike, plots: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.plots = plots
        self._summary: str | None = None  # finish's summary.json, written by commit
        self.grad_steps: list[int] = []
        self.grad_curves: dict[str, dict[str, list[np.ndarray]]] = {}
        self.info: dict = {}

    def start(self, config, info):
        import yaml

        self.info = info
        (self.dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (self.dir / "metrics.jsonl").touch()

    def _append(self, name: str, record: dict):
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")

    def log(self, step, split, metrics, seeds):
        with open(self.dir / "metrics.jsonl", "a") as f:
            for i, seed in enumerate(seeds):
                record = {"step": step, "seed": seed, "split": split}
                record.update({k: _scalar(v[i]) for k, v in metrics.items()})
                f.write(json.dumps(record) + "\n")

    def log_gradients(self, step, curves, seeds):
        self.grad_steps.append(step)
        self.grad_seeds = list(seeds)
        for name, stats in curves.items():
            slot = self.grad_curves.setdefault(name, {"mean": [], "std": []})
            slot["mean"].append(np.asarray(stats["mean"]))
            slot["std"].append(np.asarray(stats["std"]))
        self._write_gradients()

    def _write_gradients(self):
        arrays = {"steps": np.asarray(self.grad_steps, np.int64),
                  "seeds": np.asarray(getattr(self, "grad_seeds", []), np.int64)}
        for name, slot in self.grad_curves.items():
            arrays[f"{name}/mean"] = np.stack(slot["mean"])
            arrays[f"{name}/std"] = np.stack(slot["std"])
        tmp = self.dir / "gradients.tmp.npz"  # written whole, then renamed: never half-written
        np.savez(tmp, **arrays)
        os.replace(tmp, self.dir / "gradients.npz")

    def position(self):
        def size(name):
            path = self.dir / name
            return path.stat().st_size if path.exists() else 0

        return {"metrics_bytes": size("metrics.jsonl"), "events_bytes": size("events.jsonl")}

    def rewind(self, position, step):
        for name, key in (("metrics.jsonl", "metrics_bytes"), ("events.jsonl", "events_bytes")):
            path = self.dir / name
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(int(position.get(key, 0)))
        path = self.dir / "gradients.npz"
        self.grad_steps, self.grad_curves = [], {}
        if path.exists():
            with np.load(path) as g:
                keep = np.asarray(g["steps"]) <= step
                self.grad_steps = [int(s) for s in np.asarray(g["steps"])[keep]]
                self.grad_seeds = [int(s) for s in np.asarray(g["seeds"])]
                for key in g.files:
                    if key.endswith("/mean") or key.endswith("/std"):
                        name, stat = key.rsplit("/", 1)
                        slot = self.grad_curves.setdefault(name, {"mean": [], "std": []})
                        slot[stat] = list(np.asarray(g[key])[keep])
            self._write_gradients()

    def event(self, kind, **fields):
        self._append("events.jsonl", {"event": kind, **fields})

    def finish(self, summary):
        self._summary = json.dumps(_jsonable(summary), indent=2)
        if self.plots:
            from rnnlab import plots

            try:
                plots.run_plots(self.dir, json.loads(self._summary))
            except Exception as err:  # a plot must never cost a run its results
                warnings.warn(f"plotting failed in {self.dir}: {err!r}", stacklevel=2)

    def commit(self):
        """Writes ``summary.json`` (whole, then renamed), after the figures and W&B: a run
        killed before this point has none, so rerunning it resumes from its last checkpoint
        and finishes what was left (:func:`rnnlab.jobs.finished`)."""
        if self._summary is None:
            return
        tmp = self.dir / "summary.tmp.json"
        tmp.write_text(self._summary)
        os.replace(tmp, self.dir / "summary.json")
        self._summary = None


DEFAULT_INIT_TIMEOUT = 15.0  # seconds; logger.wandb.init_timeout


def clear_empty_wandb_env(environ=os.environ) -> list[str]:
    """Removes ``WANDB_*`` variables set to the empty string (``WANDB_MODE=``, as shell scripts
    often leave them), so that they count as unset, as in a shell, and the configured mode
    holds; W&B itself rejects an empty mode. Returns the names removed."""
    empty = [k for k, v in environ.items() if k.startswith("WANDB_") and not v.strip()]
    for k in empty:
        del environ[k]
    return empty


class WandbSink(Sink):
    """Logs to W&B (``offline`` by default). Never raises: failures disable the sink.

    * ``offline`` means no network at all: besides the run itself, W&B's own error and
      telemetry reporting (which would otherwise resolve and contact its servers at exit) is
      switched off (``WANDB_ERROR_REPORTING=false``, before W&B's service process starts).
    * ``online`` says at once that it contacts the server and for how long at most
      (``init_timeout`` seconds, ``logger.wandb.init_timeout``; W&B's own default is 90 s),
      then, if it cannot reach it, warns and keeps the local run folder only.
    * At the end, the run gets what the local report shows for it: the ``results`` table
      (each held-out metric beside its baseline; for a forecast, the test span in the
      series' units beside every baseline), the gradient curves as line charts and the run
      folder's figures (learning curve, gradients, heat map, forecast vs truth).
    """

    def __init__(self, run_dir, mode="offline", project="rnnlab", entity=None, group=None,
                 tags=(), name=None, init_timeout: float | None = None, run_id=None):
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.wandb.mode={mode!r} is not accepted; use one of "
                             f"{WANDB_MODES}")
        _check_timeout(init_timeout)
        self.dir = Path(run_dir)
        self.mode, self.project, self.entity = mode, project, entity
        self.group, self.tags, self.name = group, list(tags), name
        self.run_id = run_id  # resume this W&B run (a resumed rnnlab run keeps its W&B run)
        self.init_timeout = init_timeout
        self.run = None
        self.grad_history: dict[str, list[tuple[int, np.ndarray]]] = {}

    def _fail(self, what: str, err: Exception):
        print(f"[rnnlab] W&B {what} failed ({err!r}); continuing with the local run folder only",
              file=sys.stderr)
        try:
            if self.run is not None:
                self.run.finish(exit_code=1)
        except Exception:
            pass
        self.run = None

    def _timeout(self, config: dict) -> float:
        """``init_timeout`` given to the sink, else ``logger.wandb.init_timeout`` of the
        run's config, else :data:`DEFAULT_INIT_TIMEOUT`."""
        if self.init_timeout is not None:
            return float(self.init_timeout)
        value = ((config.get("logger") or {}).get("wandb") or {}).get("init_timeout")
        _check_timeout(value)
        return DEFAULT_INIT_TIMEOUT if value is None else float(value)

    def start(self, config, info):
        if self.mode == "disabled":
            return
        timeout = self._timeout(config)  # a bad value fails the run here, naming the field
        try:
            clear_empty_wandb_env()
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            if self.mode == "offline":
                os.environ["WANDB_ERROR_REPORTING"] = "false"
            else:
                host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
                print(f"[rnnlab] W&B online: contacting {host} (waiting at most {timeout:g} s, "
                      f"logger.wandb.init_timeout; if it cannot be reached the run goes on with "
                      f"the local run folder only)", file=sys.stderr, flush=True)
            settings = wandb.Settings(silent=True, console="off", init_timeout=timeout,
                                      x_disable_stats=True)
            # create_new: packed jobs keep their runs open side by side in one process
            # ("finish_previous" would finish every other job's run at each start)
            self.run = wandb.init(project=self.project, entity=self.entity, group=self.group,
                                  tags=self.tags, name=self.name, mode=self.mode,
                                  dir=str(self.dir), config={**config, "info": info},
                                  settings=settings, reinit="create_new",
                                  id=self.run_id, resume="allow" if self.run_id else None)
            self.run_id = self.run.id
        except Exception as err:
            self._fail("init", err)

    def log(self, step, split, metrics, seeds):
        if self.run is None:
            return
        data = {}
        for name, values in metrics.items():
            values = np.asarray(values, dtype=np.float64)
            for i, seed in enumerate(seeds):
                data[f"{split}/{name}/seed_{seed}"] = _scalar(values[i])
            finite = values[np.isfinite(values)]
            if finite.size:
                data[f"{split}/{name}"] = float(finite.mean())
        try:
            self.run.log(data, step=step)
        except Exception as err:
            self._fail("log", err)

    def log_gradients(self, step, curves, seeds):
        if self.run is None:
            return
        for name, stats in curves.items():
            self.grad_history.setdefault(name, []).append(
                (step, np.asarray(stats["mean"], dtype=np.float64).mean(axis=0)))

    def finish(self, summary):
        if self.run is None:
            return
        try:
            import wandb

            for key, value in flatten(_jsonable(summary)).items():
                if isinstance(value, int | float | str | bool) or value is None:
                    self.run.summary[key] = value
            columns, rows = results_rows(summary)
            if rows:
                self.run.log({"results": wandb.Table(columns=columns, data=rows)})
            for name, history in self.grad_history.items():
                steps = [s for s, _ in history]
                # log charts cannot show 0 or NaN: those points are left out (None)
                ys = [[float(v) if np.isfinite(v) and v > 0 else None for v in curve]
                      for _, curve in history]
                xs = list(range(len(ys[0])))
                self.run.log({f"gradients/{name}/norm_vs_t": wandb.plot.line_series(
                    xs=xs, ys=ys, keys=[f"step {s}" for s in steps],
                    title=f"||dL/d{name}_t|| (seed mean)", xname="t")})
            for key, file in RUN_FIGURES.items():
                if (self.dir / file).exists():
                    self.run.log({key: wandb.Image(str(self.dir / file))})
            self.run.finish(exit_code=0 if summary.get("status") == "ok" else 1)
        except Exception as err:
            self._fail("finish", err)
        self.run = None

    def position(self):
        return {"wandb_id": self.run_id} if self.run_id else {}


# figures of the run folder that the W&B run carries, keyed as in W&B
RUN_FIGURES = {"figures/learning_curve": "learning_curve.png",
               "gradients/curves": "gradients.png",
               "gradients/heatmap": "gradients_heatmap.png",
               "figures/forecast": "forecast.png"}
RESULT_COLUMNS = ["split", "metric", "model mean", "model std", "seeds", "baseline",
                  "baseline value"]


def results_rows(summary: dict) -> tuple[list[str], list[list]]:
    """The ``results`` table of a run, as the local report shows it: one row per (metric,
    baseline): the held-out metrics (mean and std over the live seeds) beside the task's
    baseline; for a forecast, the test-span metrics in the series' units beside every
    baseline on the same windows."""
    rows = []
    live = sum(not m.get("diverged") for m in summary.get("per_seed", {}).values())
    for metric, stats in (summary.get("final") or {}).items():
        base = (summary.get("baselines") or {}).get(metric)
        rows.append(["held-out", metric, _scalar(stats["mean"]), _scalar(stats["std"]), live,
                     "task baseline" if base is not None else None,
                     None if base is None else _scalar(base)])
    forecast = summary.get("forecast") or {}
    per_seed = [m for m in forecast.get("per_seed", []) if m]
    for metric in ("rmse", "mae", "mase", "smape"):
        values = np.array([m[metric] for m in per_seed if m.get(metric) is not None], float)
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        for name, base in (forecast.get("baselines") or {}).items():
            rows.append([f"{forecast.get('split', 'test')} (series units)", metric,
                         float(values.mean()), float(values.std()), int(values.size), name,
                         None if base.get(metric) is None else _scalar(base[metric])])
    return RESULT_COLUMNS, rows


def _check_timeout(value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"logger.wandb.init_timeout must be a number of seconds > 0; got "
                         f"{value!r}")


def flatten(d: dict, sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level, keys joined with ``sep`` (``{"a": {"b": 1}}`` ->
    ``{"a/b": 1}``)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, sep, key + sep))
        else:
            out[key] = v
    return out


class Logger:
    """Fans every call out to the sinks; local first, so nothing logged is lost when a later
    sink fails."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def start(self, config: dict, info: dict):
        for s in self.sinks:
            s.start(config, info)

    def log(self, step: int, split: str, metrics: dict, seeds: list[int]):
        metrics = {k: np.atleast_1d(np.asarray(v)) for k, v in metrics.items()}
        for s in self.sinks:
            s.log(step, split, metrics, seeds)

    def log_gradients(self, step: int, curves: dict, seeds: list[int]):
        curves = {k: {s: np.asarray(v) for s, v in c.items()} for k, c in curves.items()}
        for s in self.sinks:
            s.log_gradients(step, curves, seeds)

    def event(self, kind: str, **fields):
        for s in self.sinks:
            s.event(kind, **fields)

    def finish(self, summary: dict):
        for s in self.sinks:
            s.finish(summary)
        for s in self.sinks:
            s.commit()

    def position(self) -> dict:
        out = {}
        for s in self.sinks:
            out.update(s.position())
        return out

    def rewind(self, position: dict, step: int):
        for s in self.sinks:
            s.rewind(position, step)
