"""One logger interface, several sinks: the local run folder (always) and W&B.

The run folder (Hydra's output folder) holds:

* ``config.yaml``: the resolved config;
* ``metrics.jsonl``: one JSON object per (step, seed, split) with the split's metrics,
  flushed after every chunk, so a run that fails later keeps what it logged;
* ``gradients.npz``: ``steps [M]`` and, per curve ``NAME`` (``layer_0/h``...), arrays
  ``NAME/mean`` and ``NAME/std`` of shape ``[M, S, T]`` (measurements x seeds x time);
* ``events.jsonl``: divergence and other notable events;
* ``summary.json``: final metrics per seed, their mean and std, the baselines, status;
* plots (``learning_curve.png``, ``gradients.png``) when ``logger.plots``.

W&B: one W&B run per config (the seeds of a config train in one program), in the config's
``group`` (by default the sweep folder's name), with metrics keyed ``SPLIT/METRIC/seed_K`` and
their seed mean ``SPLIT/METRIC``; gradient curves as line charts and a heat map. The default
mode is ``offline``: no login, no network, no prompt; runs sync later with ``wandb sync``.
Any W&B failure is reported once and logging continues in the run folder.
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
        (self.dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
        if self.plots:
            from rnnlab import plots

            try:
                plots.run_plots(self.dir)
            except Exception as err:  # a plot must never cost a run its results
                warnings.warn(f"plotting failed in {self.dir}: {err!r}", stacklevel=2)


class WandbSink(Sink):
    """Logs to W&B (``offline`` by default). Never raises: failures disable the sink."""

    def __init__(self, run_dir, mode="offline", project="rnnlab", entity=None, group=None,
                 tags=(), name=None, run_id=None):
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.wandb.mode={mode!r} is not accepted; use one of "
                             f"{WANDB_MODES}")
        self.dir = Path(run_dir)
        self.mode, self.project, self.entity = mode, project, entity
        self.group, self.tags, self.name = group, list(tags), name
        self.run_id = run_id  # resume this W&B run (a resumed rnnlab run keeps its W&B run)
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

    def start(self, config, info):
        if self.mode == "disabled":
            return
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            settings = wandb.Settings(silent=True, console="off", init_timeout=60,
                                      x_disable_stats=True)
            self.run = wandb.init(project=self.project, entity=self.entity, group=self.group,
                                  tags=self.tags, name=self.name, mode=self.mode,
                                  dir=str(self.dir), config={**config, "info": info},
                                  settings=settings, reinit="finish_previous",
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

            for key, value in _flatten(summary).items():
                if isinstance(value, int | float | str | bool) or value is None:
                    self.run.summary[key] = value
            for name, history in self.grad_history.items():
                steps = [s for s, _ in history]
                ys = [np.maximum(curve, 1e-30).tolist() for _, curve in history]
                xs = list(range(len(ys[0])))
                self.run.log({f"gradients/{name}/norm_vs_t": wandb.plot.line_series(
                    xs=xs, ys=ys, keys=[f"step {s}" for s in steps],
                    title=f"||dL/d{name}_t|| (seed mean)", xname="t")})
            heat = self.dir / "gradients_heatmap.png"
            if heat.exists():
                self.run.log({"gradients/heatmap": wandb.Image(str(heat))})
            self.run.finish(exit_code=0 if summary.get("status") == "ok" else 1)
        except Exception as err:
            self._fail("finish", err)
        self.run = None


    def position(self):
        return {"wandb_id": self.run_id} if self.run_id else {}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
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

    def position(self) -> dict:
        out = {}
        for s in self.sinks:
            out.update(s.position())
        return out

    def rewind(self, position: dict, step: int):
        for s in self.sinks:
            s.rewind(position, step)
