# ruff: noqa: E402
"""Hydra entry point.

    python -m rnnlab.run cell=peephole
    python -m rnnlab.run -m cell=lstm,peephole,gru,rnn task=copy
    python -m rnnlab.run -m +experiment=memory_horizon_cpu

Each job trains all ``train.num_seeds`` seeds of its config in one compiled program and writes
its run folder (Hydra's output folder; see :mod:`rnnlab.logging`), and a copy of what it
prints into ``run.log`` there.

Exit status: 0 when everything ran; 2 when a value cannot run (one line names the field, the
value and what is accepted; nothing is written); 1 when a run failed while training, or when
any job of a sweep failed or was stopped by a signal; 130 when Ctrl-C stopped it before
training or, pressed twice, without the checkpoint (the first Ctrl-C during training stops
it after the chunk in flight, with a checkpoint: :class:`rnnlab.loop.StopSignals`). In a
sweep (``-m``) every job runs whatever the others do (until a signal stops one: the later
jobs do not start); a failed job records its error in its run folder, and the sweep folder
gets ``sweep.csv``/``sweep.md`` (see :mod:`rnnlab.jobs`). ``HYDRA_FULL_ERROR=1`` shows tracebacks.

Sweeps run with any Hydra launcher or sweeper preset (``hydra/launcher=joblib``,
``submitit_local``, ``submitit_slurm``, ``hydra/sweeper=optuna``; see :mod:`rnnlab.launchers`).
``hydra/launcher=packed`` trains the jobs that differ only in packable values (seeds,
optimizer values, dropout rate, initialisers: :data:`rnnlab.packing.PACKABLE`) as the members
of one program (:mod:`rnnlab.packing`).
An unknown one, or one whose plugin is not installed, is refused before Hydra runs (status 2).
The value a job returns, its task's main held-out metric (mean over seeds; None when the job
failed), is the objective of the Optuna sweeper.
"""

import os
import signal
import sys
from pathlib import Path


def _ctrl_c_while_starting(signum, frame):  # the imports below take seconds; no traceback
    print("\n[rnnlab] stopped by Ctrl-C", file=sys.stderr, flush=True)
    os._exit(130)


_CTRL_C_IGNORED = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # nohup, background jobs
if __name__ == "__main__" and not _CTRL_C_IGNORED:  # as the command only, never on import
    signal.signal(signal.SIGINT, _ctrl_c_while_starting)  # hence the imports below it (E402)

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rnnlab import jobs
from rnnlab.checks import ConfigError
from rnnlab.config import (
    check_group_choices,
    check_override_keys,
    check_width_overrides,
    config_dir,
    register_configs,
)
from rnnlab.jobs import console_to_run_log
from rnnlab.launchers import check_modes, check_overrides
from rnnlab.loop import Interrupted, execute, summary_line
from rnnlab.registry import PluginError

try:
    register_configs()
except PluginError:  # a plugin or class path that does not load: main() says so in one line
    pass


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and jobs.skip_if_stopped(hc.runtime.output_dir, hc.job.num,
                                                            hc.job.override_dirname):
        return None
    with console_to_run_log(hc.runtime.output_dir):
        return _job(cfg)


def _job(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    sweep = hc.mode == RunMode.MULTIRUN
    if sweep:  # a rerun sweep resumes: finished jobs stay
        done, value = jobs.earlier_result(run_dir, cfg, hc.job.num, hc.job.override_dirname)
        if done:
            return value
    try:
        jobs.use_compilation_cache(cfg)  # in a launcher's worker process too
        summary = execute(cfg, run_dir, trainer=jobs.prebuilt(cfg))
    except Exception as err:
        if jobs.full_errors() and not sweep:
            raise
        bad_input = isinstance(err, ConfigError)
        if sweep:
            if bad_input:  # nothing was written: the job's record is its failed summary
                jobs.record_failed_job(run_dir, err, cfg)
            word = "INTERRUPTED" if isinstance(err, Interrupted) else "FAILED"
            if isinstance(err, Interrupted):  # the sweep's later jobs do not start
                jobs.stop_sweep(err)
            jobs.fail(f"[rnnlab] job {hc.job.num} ({hc.job.override_dirname}) {word}: "
                      f"{type(err).__name__}: {err}\n[rnnlab] its run folder: {run_dir}",
                      jobs.EXIT_FAILED)
            return None
        if bad_input:
            jobs.remove_if_only_hydra(run_dir)
            jobs.fail(f"[rnnlab] error: {err}", jobs.EXIT_BAD_INPUT)
        elif isinstance(err, Interrupted):
            jobs.fail(f"[rnnlab] {err}: {run_dir}", jobs.EXIT_FAILED)
        else:
            jobs.fail(f"[rnnlab] run failed: {type(err).__name__}: {err}\n[rnnlab] its run "
                      f"folder keeps what was logged (traceback in events.jsonl): {run_dir}",
                      jobs.EXIT_FAILED)
        return None
    print(summary_line(summary))
    print(f"[rnnlab] run folder: {_shown(run_dir)}")
    main = summary["main_metric"]["name"]
    return summary["final"].get(main, {}).get("mean")


EXIT_CTRL_C = 130  # the shell's status for a process ended by SIGINT (128 + 2)


def main() -> None:
    if not _CTRL_C_IGNORED:  # KeyboardInterrupt from here on
        signal.signal(signal.SIGINT, signal.default_int_handler)
    jobs.reset()
    # before Hydra: its messages for these are long, or a traceback
    refused = (check_modes(sys.argv[1:]) or check_overrides(sys.argv[1:])
               or _register(sys.argv[1:]) or check_override_keys(sys.argv[1:])
               or check_group_choices(sys.argv[1:]) or check_width_overrides(sys.argv[1:])
               or check_printed_config(sys.argv[1:]))
    if refused:
        print(f"[rnnlab] error: {refused}", file=sys.stderr)
        sys.exit(jobs.EXIT_BAD_INPUT)
    try:
        _main()
    except KeyboardInterrupt:  # Ctrl-C before training, or twice: no traceback
        print("\n[rnnlab] stopped by Ctrl-C; rerunning the same command in the same run folder "
              "continues from its last checkpoint", file=sys.stderr)
        sys.exit(EXIT_CTRL_C)
    if jobs.exit_code():
        sys.exit(jobs.exit_code())


def check_printed_config(args: list[str]) -> str | None:
    """``--cfg job`` (or ``all``) with plain ``key=value`` overrides: the error a run of that
    config would stop with at once (:func:`rnnlab.train.validate`: ranges, names, relations
    between fields), so that a config that cannot run is not printed as if it could; None
    otherwise (other modes, other flags such as ``--config-name``: left to Hydra). Writes
    nothing."""
    from rnnlab.config import compose
    from rnnlab.train import validate

    flags = [i for i, a in enumerate(args) if a.startswith("-")]
    if len(flags) != 1 or args[flags[0]].split("=", 1)[0] not in ("--cfg", "-c"):
        return None
    i = flags[0]
    _, eq, value = args[i].partition("=")
    if not eq:  # --cfg job: the value is the next argument
        value = args[i + 1] if i + 1 < len(args) else ""
    overrides = args[:i] + args[i + (1 if eq else 2):]
    if value not in ("job", "all") or any("=" not in a or a.startswith(("hydra.", "hydra/"))
                                          for a in overrides):
        return None
    try:
        cfg = compose(overrides)
    except Exception:  # left to Hydra's own message
        return None
    try:
        validate(cfg)
    except ConfigError as err:
        return f"{err} (--cfg {value} prints only configs that can run)"
    return None


def _shown(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it (as the sweep lines
    print theirs), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _register(argv: list[str]) -> str | None:
    """Loads the plugins and the class paths that ``argv`` chooses (``cell=pkg.mod.Cell``);
    what is wrong with one, as a message, or None."""
    try:
        register_configs(argv)
    except PluginError as err:
        return str(err)
    return None


if __name__ == "__main__":
    main()
