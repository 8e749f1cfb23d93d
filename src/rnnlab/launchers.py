"""Launchers and sweepers: where the jobs of a sweep run, and how their settings are chosen.

The presets are Hydra config groups (``conf/hydra/launcher/*.yaml``, ``conf/hydra/sweeper/*.yaml``)
over existing engines, each an optional plugin (``pip install "rnnlab[cluster]"``):

* ``hydra/launcher=joblib``: parallel jobs on one machine (hydra-joblib-launcher),
  ``hydra.launcher.n_jobs`` at a time, sharing its GPU.
* ``hydra/launcher=submitit_local``: every job of a sweep at once, each in its own process
  (hydra-submitit-launcher).
* ``hydra/launcher=submitit_slurm``: one SLURM array job per sweep (hydra-submitit-launcher).
* ``hydra/sweeper=optuna``: an Optuna study over the learning rate, width and dropout
  (hydra-optuna-sweeper), its direction taken from the task, its best job in ``best.yaml``.

Hydra instantiates launcher and sweeper plugins only from the ``hydra_plugins`` namespace, so
rnnlab's versions of the plugin classes live in ``hydra_plugins/rnnlab_plugins.py``; this module
holds what they share, and what runs before Hydra.

:func:`check_overrides` refuses an unknown preset, or one whose plugin is not installed, before
Hydra runs (one line naming the extra to install, exit status 2, nothing written).
:func:`register_presets` makes the presets the only configs of those names (the plugins store
their own configs under the same names).

Jobs that share a GPU: JAX preallocates 75% of a GPU's memory in each process by default, so a
second process on the same GPU runs out of memory. The launchers that run jobs side by side on
one machine give every job ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (allocate on demand) and
``XLA_PYTHON_CLIENT_MEM_FRACTION`` (the most of each GPU's memory one job may take; by default
``0.9 / jobs at once``), through Hydra's ``hydra.job.env_set``, which the job's process applies
before it starts, hence before JAX starts its backend (JAX's GPU memory settings:
https://docs.jax.dev/en/latest/gpu_memory_allocation.html). A variable already set in the
environment of the command, or set with ``hydra.job.env_set.NAME=...``, is left as it is.

Jobs whose process dies: a job killed by the operating system (out of memory), by a crash in
native code, or by a scheduler (SLURM's time or memory limit, preemption) returns nothing to
the launcher. The plugins then stop the whole sweep with a traceback (joblib's
``TerminatedWorkerError``, submitit's ``UncompletedJobError``) and the sweep's tables are
never written. rnnlab's launchers instead record such a job as failed (:func:`lost_job`:
``WorkerDied`` in its ``summary.json`` and in ``sweep.csv``; what it logged stays, and
rerunning the sweep resumes it from its last checkpoint) and let the other jobs finish.
"""

import importlib.util
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from rnnlab import _cpu_cores, jobs

EXTRA = "cluster"  # pip install "rnnlab[cluster]" installs every plugin below
GROUPS = {"hydra/launcher": "launcher", "hydra/sweeper": "sweeper"}
# (group, preset) -> (module that must be importable, the PyPI package that provides it)
PLUGINS = {
    ("hydra/launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher",
                                   "hydra-joblib-launcher"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher",
                                           "hydra-submitit-launcher"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher",
                                           "hydra-submitit-launcher"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}
GPU_MEMORY_SHARED = 0.9  # of each GPU's memory, split evenly between the jobs running at once
_OVERRIDE = re.compile(r"^\+{0,2}(hydra/(?:launcher|sweeper))=(.*)$")


def plugin_installed(group: str, name: str) -> bool:
    """Whether the plugin behind the preset ``group=name`` can be imported (True for presets
    that need none)."""
    entry = PLUGINS.get((group, name))
    return entry is None or importable(entry[0])


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def options(group: str) -> list[str]:
    """The choices of ``group`` (``hydra/launcher`` or ``hydra/sweeper``): the presets shipped in
    ``conf/`` and the configs Hydra and its installed plugins register."""
    from hydra.core.config_store import ConfigStore

    from rnnlab.config import config_dir

    register_presets()
    names = {p.stem for p in (config_dir() / group).glob("*.yaml")}
    try:
        names |= {n.removesuffix(".yaml") for n in ConfigStore.instance().list(group)
                  if n.endswith(".yaml")}
    except OSError:  # no such group in the ConfigStore
        pass
    return sorted(names)


# Hydra's command-line modes: at most one per call (Hydra raises a bare ValueError otherwise)
MODES = {"--run": "--run", "-r": "--run", "--multirun": "--multirun", "-m": "--multirun",
         "--cfg": "--cfg", "-c": "--cfg", "--info": "--info", "-i": "--info",
         "--shell-completion": "--shell-completion", "-sc": "--shell-completion"}


def check_modes(args: list[str]) -> str | None:
    """The error for command-line arguments ``args`` that ask Hydra for more than one mode
    (:data:`MODES`, e.g. ``-m --cfg job``), naming them and what to run instead; None when
    there is at most one. Writes nothing."""
    given = []
    for arg in args:
        mode = MODES.get(arg.split("=", 1)[0])
        if mode is not None and mode not in given:
            given.append(mode)
    if len(given) < 2:
        return None
    hint = ""
    if "--multirun" in given and "--cfg" in given:
        hint = ("; to see one job's config, drop -m and give one value per key "
                "(python -m rnnlab.run --cfg job cell=lstm)")
    return (f"{' and '.join(given)} cannot be combined: Hydra runs one of --run, --multirun, "
            f"--cfg, --info and --shell-completion per call{hint}")


def check_overrides(args: list[str]) -> str | None:
    """The error for a ``hydra/launcher=NAME`` or ``hydra/sweeper=NAME`` among the command-line
    arguments ``args`` that cannot run: an unknown NAME (the message lists the choices), or a
    preset whose plugin is missing (the message names the extra to install). None when all is
    well. Writes nothing."""
    for arg in args:
        match = _OVERRIDE.match(arg)
        if match is None:
            continue
        group, name = match.groups()
        kind = GROUPS[group]
        choices = options(group)
        if name not in choices:
            return (f"{group}={name}: no such {kind}; choose one of: {', '.join(choices)} "
                    f"(plugin {kind}s come with pip install \"rnnlab[{EXTRA}]\")")
        if not plugin_installed(group, name):
            package = PLUGINS[(group, name)][1]
            return (f"{group}={name} needs the {package} plugin, which is not installed: "
                    f"pip install \"rnnlab[{EXTRA}]\" (or pip install {package})")
    return None


def register_presets() -> None:
    """Makes ``conf/hydra/{launcher,sweeper}/NAME.yaml`` the only configs named NAME.

    Plugins store their own config under the same names (``joblib``, ``submitit_local``,
    ``submitit_slurm``, ``optuna``) in Hydra's ConfigStore, and Hydra 1.3 would then merge our
    preset into theirs as a schema (deprecated "automatic schema matching"), which fails for
    presets that set other keys or whose plugin config has a defaults list. The plugins are
    scanned first (once per process), so their entries cannot come back afterwards."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from rnnlab.config import config_dir

    Plugins.instance()  # scans hydra_plugins.* now: their ConfigStore entries are made here
    repo = ConfigStore.instance().repo
    for group in GROUPS:
        node = repo
        for part in group.split("/"):
            node = node.get(part, {})
        for preset in (config_dir() / group).glob("*.yaml"):
            node.pop(preset.name, None)


def refuse(message: str) -> None:
    """A bad launcher or sweeper setting: one line, exit status 2 (before any job starts)."""
    if jobs.full_errors():
        raise ValueError(message)
    print(f"[rnnlab] error: {message}", file=sys.stderr)
    sys.exit(jobs.EXIT_BAD_INPUT)


# ---- jobs side by side on one GPU --------------------------------------------------------------
def jax_memory_env(concurrent: int, gpu_memory_fraction: float | None = None,
                   preallocate: bool = False) -> dict[str, str]:
    """The JAX GPU-memory variables for one of ``concurrent`` jobs sharing a GPU.

    Returns ``XLA_PYTHON_CLIENT_PREALLOCATE`` (``"false"`` unless ``preallocate``) and
    ``XLA_PYTHON_CLIENT_MEM_FRACTION``: ``gpu_memory_fraction`` if given, else
    ``0.9 / concurrent`` rounded down to 3 decimals (so the jobs together never ask for more
    than 90% of the memory), e.g. 2 jobs: ``"0.45"``.

    Raises:
        ValueError: ``concurrent`` < 1, or a fraction outside (0, 1].
    """
    if not isinstance(concurrent, int) or concurrent < 1:
        raise ValueError(f"jobs at once must be an int >= 1; got {concurrent!r}")
    if gpu_memory_fraction is None:
        fraction = math.floor(1000 * GPU_MEMORY_SHARED / concurrent) / 1000
    else:
        number = (isinstance(gpu_memory_fraction, int | float)
                  and not isinstance(gpu_memory_fraction, bool))
        if not number or not 0.0 < gpu_memory_fraction <= 1.0:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1] or null; "
                             f"got {gpu_memory_fraction!r}")
        fraction = float(gpu_memory_fraction)
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "true" if preallocate else "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction:g}"}


class SharesOneGpu:
    """Mixin for launchers whose jobs run side by side on this machine: each job's overrides
    get ``++hydra.job.env_set.NAME='VALUE'`` for :func:`jax_memory_env`'s variables (Hydra
    records them in the job's ``.hydra/hydra.yaml`` and sets them in the job's process)."""

    gpu_memory_fraction: float | None
    preallocate: bool
    config: DictConfig | None

    def _check_memory(self, gpu_memory_fraction, preallocate) -> None:
        try:
            jax_memory_env(1, gpu_memory_fraction, bool(preallocate))
        except ValueError as err:
            refuse(f"hydra.launcher.{err}")
        if not isinstance(preallocate, bool):
            refuse(f"hydra.launcher.preallocate must be true or false; got {preallocate!r}")
        self.gpu_memory_fraction = gpu_memory_fraction
        self.preallocate = preallocate

    def _with_memory_env(self, job_overrides, concurrent: int) -> list[list[str]]:
        env = jax_memory_env(concurrent, self.gpu_memory_fraction, self.preallocate)
        chosen = OmegaConf.select(self.config, "hydra.job.env_set", default=None) or {}
        extra = [f"++hydra.job.env_set.{k}='{v}'" for k, v in env.items()
                 if k not in chosen and k not in os.environ]
        return [[*overrides, *extra] for overrides in job_overrides]


# ---- jobs whose process died ------------------------------------------------------------------
def job_config(hydra_context, config: DictConfig, overrides, job_num: int) -> DictConfig:
    """The config of job ``job_num`` of a sweep with these ``overrides``, as
    ``hydra.core.utils.run_job`` composes it (``hydra.job.num`` and ``id`` set)."""
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.num = job_num
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{job_num}"
    return cfg


def job_run_dir(hydra_context, config: DictConfig, overrides, job_num: int) -> Path:
    """The run folder Hydra gives job ``job_num`` of a sweep with these ``overrides``
    (``hydra.sweep.dir``/``hydra.sweep.subdir``)."""
    cfg = job_config(hydra_context, config, overrides, job_num)
    return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)


def started_since(run_dir: Path, since: float) -> bool:
    """Whether a job took its run folder's lock (:class:`rnnlab.jobs.RunDirLock`, rewritten
    when taken) at or after the time ``since`` (``time.time()``)."""
    try:
        return (Path(run_dir) / jobs.LOCK_NAME).stat().st_mtime >= since - 1.0
    except OSError:
        return False


def lost_job(hydra_context, config: DictConfig, overrides, job_num: int, reason: str):
    """What the launcher returns for a job whose process died
    (:class:`rnnlab.jobs.WorkerDied`): its run folder gets a failed ``summary.json`` naming
    ``reason`` (unless the job wrote its own),
    the sweep's console a FAILED line, the command exit status 1; the job's value is None
    (a failed trial for a sweeper), so the sweep goes on. What the job logged is kept, and a
    checkpoint it wrote lets a rerun of the sweep resume it."""
    from hydra.core.utils import JobReturn, JobStatus

    cfg = job_config(hydra_context, config, overrides, job_num)
    run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
    err = jobs.WorkerDied(reason)
    jobs.record_failed_job(run_dir, err, cfg)
    shown = " ".join(o for o in overrides if not o.startswith(("hydra.", "++hydra.")))
    jobs.fail(f"[rnnlab] job {job_num} ({shown}) FAILED: WorkerDied: {reason}\n"
              f"[rnnlab] its run folder keeps what was logged: {run_dir}", jobs.EXIT_FAILED)
    ret = JobReturn(overrides=list(overrides), working_dir=str(run_dir),
                    status=JobStatus.COMPLETED)
    ret.return_value = None
    return ret


def cpu_count() -> int:
    """The CPU cores this process may use (also rnnlab's CPU device count: rnnlab/__init__.py)."""
    return _cpu_cores()


# ---- Optuna ------------------------------------------------------------------------------------
DIRECTIONS = ("auto", "minimize", "maximize")
BEST = "best.yaml"


def task_direction(task_name: str) -> str:
    """``"maximize"`` or ``"minimize"``: how the task ranks its main held-out metric (its
    ``maximize`` class attribute)."""
    from rnnlab.tasks import get_task_class

    return "maximize" if get_task_class(task_name).maximize else "minimize"


def best_job(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The ok row of :func:`rnnlab.jobs.sweep_rows` with the best finite ``mean`` (the main
    metric's seed mean, the value each job returned), or None when there is none."""
    ok = [r for r in rows if r["status"] == "ok" and math.isfinite(r["mean"])]
    if not ok:
        return None
    pick = max if direction == "maximize" else min
    return pick(ok, key=lambda r: r["mean"])


def write_best(sweep_dir: Path, direction: str, metric: str) -> dict[str, Any] | None:
    """Writes ``SWEEP_DIR/best.yaml``: the metric, the direction, the best job's value, job,
    run folder, overrides and its full config (``value: null`` when no job finished)."""
    sweep_dir = Path(sweep_dir)
    best = best_job(jobs.sweep_rows(sweep_dir), direction)
    record: dict[str, Any] = {"metric": metric, "direction": direction, "value": None,
                              "job": None, "run_dir": None, "overrides": [], "config": None}
    if best is not None:
        run_dir = Path(best["run_dir"])
        overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
        record.update(value=best["mean"], job=best["job"], run_dir=str(run_dir),
                      overrides=OmegaConf.to_container(overrides),
                      config=OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" /
                                                                   "config.yaml")))
    OmegaConf.save(OmegaConf.create(record), sweep_dir / BEST)
    return best
