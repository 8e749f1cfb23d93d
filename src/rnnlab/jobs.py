"""What the command line does around each job: refusing bad values before anything is written,
one run per run folder, and the sweep's outcome at the end.

* Single runs (``python -m rnnlab.run ...``): :class:`RunCallback.on_run_start` builds the run
  (every check of :func:`rnnlab.train.make_train`) and checks its folder *before* Hydra creates
  it, so a bad value prints one line, exits with status 2 and leaves no folder behind.
* Every job holds an exclusive lock on its run folder (:func:`claim_run_dir`) while it runs; a
  second run pointed at the same folder is refused, and so is a folder that already holds a
  finished run.
* Sweeps (``-m``): :class:`RunCallback.on_multirun_end` writes ``sweep.csv`` and ``sweep.md``
  (one row per job: status, error, main metric mean ± std over seeds, run folder) into the
  sweep folder, prints the failed jobs, and makes the command exit with status 1 when any job
  failed. It reads the jobs' ``summary.json`` files, so it works with any Hydra launcher.
  Every job's end (``on_job_end``, in the job's own process) rewrites them too, so a sweep that
  never reaches its end (a worker killed, the launcher aborted) keeps the table of the jobs
  done so far (those still running: ``running``).

``HYDRA_FULL_ERROR=1`` shows the Python traceback of a failure instead of the one-line message.
"""

import contextlib
import copy
import fcntl
import io
import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from rnnlab.checks import ConfigError

LOCK_NAME = ".rnnlab.lock"
SUMMARY = "summary.json"
EXIT_BAD_INPUT = 2  # a value that cannot run (nothing was trained)
EXIT_FAILED = 1  # a run, or any job of a sweep, failed while running

_state: dict[str, Any] = {"exit_code": 0, "prebuilt": None, "stopped": None, "not_started": 0}


def full_errors() -> bool:
    """``HYDRA_FULL_ERROR=1``: show tracebacks instead of one-line messages."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


class WorkerDied(RuntimeError):
    """A sweep job whose process ended without returning: killed by a signal (the kernel's
    out-of-memory killer, a scheduler's limit) or crashed in native code (recorded by
    :func:`rnnlab.launchers.lost_job`)."""


def fail(message: str, code: int) -> None:
    """Prints ``message`` on stderr and records the exit status of the command."""
    print(message, file=sys.stderr)
    _state["exit_code"] = max(_state["exit_code"], code)


def exit_code() -> int:
    return _state["exit_code"]


def reset() -> None:
    """Forgets the exit status, the prebuilt run and a stop (one command line = one call of
    main)."""
    _state.update(exit_code=0, prebuilt=None, stopped=None, not_started=0)


def stop_sweep(err: Exception) -> None:
    """A job of this process was stopped by a signal (:class:`rnnlab.loop.Interrupted`): the
    sweep's later jobs in this process are not started (:func:`skip_if_stopped`)."""
    _state["stopped"] = str(err)


def skip_if_stopped(run_dir: Path, num, overrides: str) -> bool:
    """Whether the sweep was stopped by a signal (:func:`stop_sweep`) before this job started.
    If so, says that the job did not start, removes its folder (Hydra's files only, so that
    the sweep's table does not list it as running; a rerun of the sweep makes it again) and
    records exit status 1."""
    if _state["stopped"] is None or finished_ok(run_dir):  # a finished job is kept as usual
        return False
    remove_if_only_hydra(run_dir)
    _state["not_started"] += 1
    fail(f"[rnnlab] job {num} ({overrides}) NOT STARTED: the sweep was stopped by a signal; "
         f"rerun the same command to continue it", EXIT_FAILED)
    return True


# ---- the run folder ---------------------------------------------------------------------------
class RunDirLock:
    """An exclusive ``flock`` on ``RUN_DIR/.rnnlab.lock``, held while a job writes the folder
    (the kernel releases it when the process ends, even on SIGKILL)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.file = None

    def acquire(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(f"run folder {self.path.parent} is in use by a live run "
                              f"({holder}); choose another folder (hydra.run.dir=...)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


def check_run_dir(run_dir: Path) -> None:
    """Refuses a folder that holds a finished run (:func:`finished`), or that a live run
    holds. Writes nothing when the folder does not exist."""
    run_dir = Path(run_dir)
    if finished(run_dir):
        raise ConfigError(f"run folder {run_dir} already holds a finished run ({SUMMARY}); "
                          "choose another folder (hydra.run.dir=...) or remove that one")
    if (run_dir / LOCK_NAME).exists():
        RunDirLock(run_dir).acquire().release()


def _override_key(text: str) -> str:
    return str(text).lstrip("+~").split("=", 1)[0]


def check_sweep_dir(config: DictConfig) -> None:
    """Refuses a sweep into a ``hydra.sweep.dir`` that holds a sweep of other overrides (its
    ``multirun.yaml``, written by the sweep that made it). Jobs are numbered by their place in
    the grid, and a finished job is kept when its sweep runs again, so a changed grid (a value
    added, removed or reordered, another key) would pair finished results with other values.
    Overrides of what may change on resumption (``logger.*``, ``train.resume``) are left out
    of the comparison. Writes nothing.

    Raises:
      ConfigError: naming the folder and both lists of overrides."""
    from rnnlab.loop import IGNORED_ON_RESUME

    path = Path(str(config.hydra.sweep.dir)) / "multirun.yaml"
    if not path.is_file():
        return
    try:
        before = OmegaConf.load(path).hydra.overrides.task
    except Exception:  # not a sweep's record: nothing to compare with
        return

    def kept(overrides) -> list[str]:
        return [str(o) for o in overrides if not any(
            _override_key(o) == p or _override_key(o).startswith(p + ".")
            for p in IGNORED_ON_RESUME)]

    old, new = kept(before), kept(config.hydra.overrides.task)
    if old != new:
        raise ConfigError(
            f"sweep folder {path.parent} holds a sweep of other overrides (before: "
            f"{' '.join(old) or '(none)'}; now: {' '.join(new) or '(none)'}); its jobs are "
            f"numbered by their place in the grid, so its finished jobs would be kept under "
            f"other values. Rerun the same overrides to continue that sweep, or give a new "
            f"hydra.sweep.dir (python -m rnnlab.report on a folder above both reads them "
            f"together)")


def earlier_result(run_dir: Path, cfg: DictConfig, num, overrides: str
                   ) -> tuple[bool, float | None]:
    """What a sweep job's folder holds from an earlier run of the sweep: ``(False, None)``
    when no finished run (train it); ``(True, value)`` when it ended ok with this config
    (kept, and said so; ``value`` its main metric); ``(True, None)`` when it ended ok with
    another config (a sweeper that proposes other values for the same job number): reported
    FAILED, naming the keys that differ, and not rerun."""
    from rnnlab.loop import folder_config_differences

    if not finished_ok(run_dir):
        return False, None
    diffs = (folder_config_differences(run_dir, cfg)
             if (Path(run_dir) / "config.yaml").is_file() else [])
    if diffs:
        fail(f"[rnnlab] job {num} ({overrides}) FAILED: its folder holds a finished run of "
             f"another config ({'; '.join(diffs)}); not rerun. Give a new hydra.sweep.dir\n"
             f"[rnnlab] its run folder: {run_dir}", EXIT_FAILED)
        return True, None
    print(f"[rnnlab] job {num} finished in an earlier run of this sweep; kept: {run_dir}")
    return True, main_metric(run_dir)


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that is over: one that ended ``ok``, or ended otherwise
    with no checkpoint to continue from. A run killed before its summary, stopped by a signal,
    or failed after a checkpoint can be resumed (rerun the same command in the folder); so can
    a sweep job whose process died (``WorkerDied``, recorded by its launcher: the rerun
    resumes it, or starts it afresh without a checkpoint)."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return False
    try:
        summary = json.loads(path.read_text())
        status, error = summary.get("status"), str(summary.get("error", ""))
    except (OSError, ValueError, AttributeError):
        status, error = None, ""
    if status == "ok":
        return True
    if error.startswith(WorkerDied.__name__):
        return False
    return not any((Path(run_dir) / "checkpoints").glob("[0-9]*"))


def finished_ok(run_dir: Path) -> bool:
    path = Path(run_dir) / SUMMARY
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def main_metric(run_dir: Path) -> float | None:
    """The main metric's seed mean recorded in ``run_dir``'s summary (a job's return value)."""
    row = job_row(Path(run_dir))
    return None if math.isnan(row["mean"]) else row["mean"]


def claim_run_dir(run_dir: Path) -> RunDirLock:
    """:func:`check_run_dir`, then the folder's lock (released by the caller)."""
    check_run_dir(run_dir)
    return RunDirLock(run_dir).acquire()


def remove_if_only_hydra(run_dir: Path) -> None:
    """Deletes a run folder that holds nothing but what Hydra wrote before the job started
    (``.hydra/``, the job's log, our lock), and its date folder if that is left empty."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name in (".hydra", LOCK_NAME):
            continue
        if entry.suffix == ".log":  # Hydra's log and the console copy (run.log)
            continue
        return
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # only when empty
    except OSError:
        pass


# ---- the console, copied into the run folder ---------------------------------------------------
class _Tee(io.TextIOBase):
    """Writes to the console stream and appends to ``run.log``; progress-bar updates (``\r``
    redraws, terminal escapes) reach the console only."""

    def __init__(self, stream, logs):
        self.stream, self.logs = stream, logs

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        if "\r" not in text and "\x1b" not in text:
            for log in self.logs:
                log.write(text)
                log.flush()
        return n

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


@contextlib.contextmanager
def console_to_run_log(*run_dirs: str | Path):
    """Copies what the job prints (stdout and stderr) into ``RUN_DIR/run.log`` (appended
    beside the warnings Hydra's log handler writes there); with several folders (the jobs of a
    packed program), into each one's ``run.log``."""
    paths = [Path(d) / "run.log" for d in run_dirs]
    with contextlib.ExitStack() as stack:
        logs = []
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            logs.append(stack.enter_context(open(path, "a", encoding="utf-8")))
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, logs), _Tee(err, logs)
        try:
            yield paths[0] if len(paths) == 1 else paths
        finally:
            sys.stdout, sys.stderr = out, err


# ---- the persistent compilation cache ------------------------------------------------------------
CACHE_MIN_COMPILE_SECONDS = 0.2  # programs compiled faster than this are not worth a file


def use_compilation_cache(cfg) -> None:
    """Points JAX's persistent compilation cache at ``train.compilation_cache`` (null: off), so
    that a program of the same shapes is compiled once and reused by later runs and by the
    other jobs of a sweep. JAX reads the setting when it compiles its first program, so this
    runs before anything is built. Programs that compile in :data:`CACHE_MIN_COMPILE_SECONDS`
    or more are kept (JAX's default, 1 s, left the evaluation and the initialisation programs,
    0.3-0.9 s each on a CPU, to be compiled again by every run)."""
    import jax

    path = OmegaConf.select(cfg, "train.compilation_cache", default=None)
    if not path:
        return
    path = Path(os.path.expanduser(str(path)))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"train.compilation_cache={str(path)!r} cannot be created ({err}); "
                          "choose a writable folder, or null to turn the cache off") from None
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


# ---- single runs: build before anything is written ---------------------------------------------
def job_config(config: DictConfig) -> DictConfig:
    """The job's config as the task function receives it (without the ``hydra`` node)."""
    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def prebuilt(cfg: DictConfig):
    """The trainer built by :meth:`RunCallback.on_run_start` for this very config, or None."""
    entry = _state["prebuilt"]
    if entry is not None and entry[0] == OmegaConf.to_yaml(cfg):
        return entry[1]
    return None


class RunCallback(Callback):
    """Hydra callback (``hydra.callbacks.rnnlab`` in ``conf/config.yaml``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from rnnlab.loop import build

        cfg = job_config(config)
        try:
            use_compilation_cache(cfg)
            trainer = build(cfg)
            check_run_dir(Path(config.hydra.run.dir))
        except ConfigError as err:
            if full_errors():
                raise
            print(f"[rnnlab] error: {err}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        _state["prebuilt"] = (OmegaConf.to_yaml(cfg), trainer)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_sweep_dir(config)
        except ConfigError as err:
            if full_errors():
                raise
            print(f"[rnnlab] error: {err}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        try:
            use_compilation_cache(job_config(config))
        except ConfigError:
            pass  # each job reports it

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """In a sweep: the sweep's tables as they stand after this job (see the module
        docstring). Never fails the job: a table that cannot be written is a warning."""
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_sweep_summary(sweep_dir, not_started=_state["not_started"])
        except Exception as err:  # another job's folder half-written, a full disk, ...
            print(f"[rnnlab] warning: the sweep's tables in {sweep_dir} were not updated "
                  f"after this job ({type(err).__name__}: {err}); they are written again at "
                  f"the end of the sweep", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = sweep_rows(sweep_dir)
        write_sweep_summary(sweep_dir, rows, not_started=_state["not_started"])
        failed = [r for r in rows if r["status"] not in ("ok",)]
        ok = len(rows) - len(failed)
        later = (f", {_state['not_started']} not started (stopped by a signal)"
                 if _state["not_started"] else "")
        print(f"[rnnlab] sweep: {len(rows)} jobs, {ok} ok, {len(failed)} not ok{later}; "
              f"{sweep_dir / 'sweep.md'}")
        for r in failed:
            fail(f"[rnnlab]   {r['job']} {r['status'].upper()}: {r['error'] or 'no summary'} "
                 f"({r['run_dir']})", EXIT_FAILED)


# ---- the sweep's outcome ----------------------------------------------------------------------
def _job_overrides(job_dir: Path) -> str:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return ""
    return " ".join(str(o) for o in (OmegaConf.load(path) or []))


def _fmt(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.4g}"


def job_row(job_dir: Path) -> dict[str, Any]:
    """One job's status (``ok``, ``diverged``, ``failed``, ``running``), error, and main
    metric (mean and std over the seeds that did not diverge)."""
    row: dict[str, Any] = {"job": job_dir.name, "status": "running", "error": "",
                           "metric": "", "mean": math.nan, "std": math.nan, "seeds": 0,
                           "diverged_seeds": 0, "overrides": _job_overrides(job_dir),
                           "run_dir": str(job_dir), "task": "", "maximize": False}
    path = job_dir / SUMMARY
    if not path.exists():
        return row
    summary = json.loads(path.read_text())
    status = summary.get("status", "failed")
    error = summary.get("error", "") or ""
    if status != "ok" and "diverged" in error:
        status = "diverged"
    row.update(status=status, error=error, seeds=len(summary.get("seeds", [])),
               diverged_seeds=len(summary.get("divergence", {}) or {}))
    main = summary.get("main_metric") or {}
    name = main.get("name", "loss")
    stats = (summary.get("final") or {}).get(name) or {}
    row.update(metric=name, mean=_num(stats.get("mean")), std=_num(stats.get("std")),
               task=summary.get("task", "") or "", maximize=bool(main.get("maximize", False)))
    return row


def best_jobs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished job with the best main metric mean, one per task and metric (jobs of
    other tasks are not compared), by the task's direction (``maximize``)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["status"] != "ok" or not r["metric"] or not math.isfinite(r["mean"]):
            continue
        key = (r["task"], r["metric"])
        other = best.get(key)
        if other is None or (r["mean"] > other["mean"] if r["maximize"]
                             else r["mean"] < other["mean"]):
            best[key] = r
    return list(best.values())


def _num(x) -> float:
    return math.nan if x is None else float(x)


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    jobs = sorted((p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()),
                  key=lambda p: (len(p.name.split("_")[0]), p.name))
    return [job_row(j) for j in jobs]


def write_sweep_summary(sweep_dir: Path, rows: list[dict[str, Any]] | None = None,
                        not_started: int = 0) -> None:
    """``sweep.csv`` (one row per job) and ``sweep.md`` (the same as a table, failed jobs
    listed with their errors) in ``sweep_dir``; ``not_started``: jobs of this sweep that did
    not start because it was stopped by a signal (they have no folder yet)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    rows = sweep_rows(sweep_dir) if rows is None else rows
    df = pd.DataFrame(rows, columns=["job", "status", "metric", "mean", "std", "seeds",
                                     "diverged_seeds", "overrides", "error", "run_dir", "task",
                                     "maximize"])
    _write_whole(sweep_dir / "sweep.csv", df.to_csv(index=False))
    split = [r["overrides"].split() for r in rows]
    common = set.intersection(*map(set, split)) if split else set()
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(df)} jobs: " + ", ".join(f"{n} {s}" for s, n in
                                              df["status"].value_counts().items())
             + (f"; {not_started} more did not start (the sweep was stopped by a signal: "
                f"rerun the same command to continue it)" if not_started else ""), "",
             f"Overrides shared by every job: `{' '.join(sorted(common)) or '(none)'}`; the "
             f"table shows the rest (sweep.csv has them all).", "",
             "| job | status | overrides | main metric (mean ± std over seeds) | seeds |",
             "| --- | --- | --- | --- | --- |"]
    for r, words in zip(rows, split, strict=True):
        r = {**r, "overrides": " ".join(w for w in words if w not in common)}
        metric = (f"{r['metric']} {_fmt(r['mean'])} ± {_fmt(r['std'])}" if r["metric"]
                  else "—")
        seeds = f"{r['seeds']}" + (f" ({r['diverged_seeds']} diverged)"
                                   if r["diverged_seeds"] else "")
        lines.append(f"| {r['job']} | {r['status']} | `{r['overrides']}` | {metric} | "
                     f"{seeds} |")
    best = best_jobs(rows)
    if best:
        lines.append("")
        lines += [f"Best {r['task'] + ' ' if r['task'] else ''}job by {r['metric']} ("
                  f"{'higher' if r['maximize'] else 'lower'} is better): `{r['job']}`, "
                  f"{_fmt(r['mean'])} ± {_fmt(r['std'])}" for r in best]
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        lines += ["", "## Jobs not ok", ""]
        lines += [f"- `{r['job']}` ({r['status']}): {r['error'] or 'no summary.json yet'} — "
                  f"`{r['run_dir']}`" for r in bad]
    _write_whole(sweep_dir / "sweep.md", "\n".join(lines) + "\n")


def _write_whole(path: Path, text: str) -> None:
    """``text`` into ``path`` through a file of this process's own, then renamed: a reader (or
    another job's process writing the same table) never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def record_failed_job(run_dir: Path, err: Exception, cfg=None) -> None:
    """A sweep job refused before it started: its folder gets a failed ``summary.json``;
    with the job's ``cfg``, naming its task's main metric (so that the sweep's table names it
    beside the failure, as it does for a job that failed while training)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / SUMMARY).exists():
        return
    summary = {"status": "failed", "error": f"{type(err).__name__}: {err}",
               "title": run_dir.name}
    main = _task_main_metric(cfg)
    if main is not None:
        summary["main_metric"] = main
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))


def _task_main_metric(cfg) -> dict[str, Any] | None:
    """The main-metric record of the task ``cfg.task.name`` names, or None when there is no
    config or its task does not resolve (the refusal may be about the task itself)."""
    try:
        from rnnlab.loop import main_metric_record
        from rnnlab.tasks import get_task_class

        return main_metric_record(get_task_class(str(cfg.task.name)))
    except Exception:  # a record of a failure must not fail itself
        return None
