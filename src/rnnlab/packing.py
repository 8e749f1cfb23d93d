"""Packed sweeps: the jobs of a sweep that differ only in values that change no array's shape
train as the members of one compiled, vmapped program.

Turn it on with the launcher preset ``hydra/launcher=packed``
(``python -m rnnlab.run -m hydra/launcher=packed optim.learning_rate=1e-4,3e-4,1e-3
train.num_seeds=5`` trains 3 jobs x 5 seeds = 15 members in one program); leave it out (Hydra's
basic launcher) or use another launcher to run every job as its own program.

What is packable (:data:`PACKABLE`): ``train.seed`` and ``train.num_seeds`` (the seeds are the
member axis already), the optimizer values a member carries as traced arrays
(``optim.learning_rate``, ``optim.weight_decay``, ``optim.grad_clip``, null included:
:data:`rnnlab.train.HPARAMS`), the dropout rate ``model.dropout`` between jobs that all have
dropout (each member carries its rate; 0 and 0.1 make two programs, 0.1 and 0.3 one), the cell
fields that only initialisation reads (:data:`INIT_ONLY`: ``cell.forget_bias``,
``cell.kernel_init``, ``cell.recurrent_init``, ``cell.bias_init``; each job's members start
from its own cells' initialisers), and the ``logger`` group (each job keeps its own logger).
Every other difference (cell, task, widths, sequence length, optimizer name or schedule,
``cell.init_preset``, steps, ...) makes separate groups, each group one program.

Each job of a group keeps everything an unpacked job has: its own run folder (config,
``metrics.jsonl``, ``summary.json``, gradients, checkpoints, ``run.log``), its own W&B run and
its own row in ``sweep.csv``; ``summary.json`` adds ``packed_members`` (the rows of the program
it trained in). A job whose every seed diverges fails alone while the others train on; a job
that stops early stops logging alone. A group is checkpointed job by job into each run folder,
so a rerun of the sweep resumes it (jobs that resume from different steps train as separate
programs), and a job's folder can even be resumed unpacked.

The launcher (``hydra_plugins/rnnlab_packed.py``) groups the jobs (:func:`group_jobs`), lets
Hydra make every job's folder as usual, then runs each group through :func:`run_group`.
"""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab import jobs
from rnnlab.checks import ConfigError
from rnnlab.logging import flatten

# cell fields read only when the parameters are initialised (never by a training step): each
# job of a group initialises its members with its own cells (rnnlab.loop.fit_members' inits)
INIT_ONLY = ("cell.forget_bias", "cell.kernel_init", "cell.recurrent_init", "cell.bias_init")
# the model's dropout rate: packable between jobs that all have dropout (rate > 0), carried
# by each member (rnnlab.train.DROPOUT); a job without dropout has no dropout layers
DROPOUT_RATE = "model.dropout"
# config keys whose values may differ between the jobs of one program (dotted prefixes)
PACKABLE = ("train.seed", "train.num_seeds", "optim.learning_rate", "optim.weight_decay",
            "optim.grad_clip", "logger", *INIT_ONLY)


def _packable(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in PACKABLE)


def pack_key(cfg: DictConfig) -> str:
    """What must be equal for two jobs to share a program: the job's config without the
    :data:`PACKABLE` keys (and without ``hydra``), as canonical JSON."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that needs a live Hydra context: compare it as text
        tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)
    flat = {k: v for k, v in flatten(tree, sep=".").items() if not _packable(k)}
    if DROPOUT_RATE in flat:  # a member carries its rate; only dropout or none is static
        flat[DROPOUT_RATE] = _has_dropout(flat[DROPOUT_RATE])
    return json.dumps(flat, sort_keys=True, default=str)


def _has_dropout(rate) -> Any:
    """``rate > 0`` for a number; anything else as it is (refused later, job by job)."""
    return rate > 0 if isinstance(rate, int | float) and not isinstance(rate, bool) else rate


def group_jobs(cfgs: list[DictConfig], max_members: int | None = None) -> list[list[int]]:
    """The indices of ``cfgs`` grouped into programs: jobs with the same :func:`pack_key`
    share one, in the order of their first job; with ``max_members``, a group is cut (between
    jobs, never inside one) so that no program has more members (seeds) than that, unless one
    job alone has more."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(pack_key(cfg), []).append(i)
    out = []
    for members in groups.values():
        current, size = [], 0
        for i in members:
            n = int(cfgs[i].train.num_seeds)
            if current and max_members is not None and size + n > max_members:
                out.append(current)
                current, size = [], 0
            current.append(i)
            size += n
        out.append(current)
    return out


@dataclasses.dataclass
class PackedJob:
    """One job of a packed group as the launcher hands it over."""

    cfg: DictConfig  # the job's config, without the hydra node
    run_dir: Path
    num: int  # hydra.job.num
    overrides: str  # hydra.job.override_dirname (for messages)


def execute_packed(entries: list[tuple[DictConfig, Path, Any]],
                   repack: str = "auto") -> list[Any]:
    """Trains several jobs as one program; ``entries`` are ``(cfg, run_dir, trainer)`` whose
    configs have the same :func:`pack_key` (trainers from :func:`rnnlab.loop.build`);
    ``repack``: when the program drops the members of jobs that stopped
    (:func:`rnnlab.loop.fit_members`).

    Returns, per job, its summary (as :func:`rnnlab.loop.execute` returns it) or the exception
    it ended with (its run folder records it, as an unpacked job's does). Jobs that resume from
    different steps train as separate programs, one per step.

    Raises:
      ValueError: the configs differ outside :data:`PACKABLE` (nothing is written)."""
    from rnnlab.loop import (
        Interrupted,
        JobRun,
        StopSignals,
        fit_members,
        fit_options,
        member_sharding,
    )

    keys = {pack_key(cfg) for cfg, _, _ in entries}
    if len(keys) > 1:
        first = json.loads(min(keys))
        other = json.loads(max(keys))
        differ = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
        raise ValueError(f"execute_packed: the jobs' configs differ outside the packable keys "
                         f"({', '.join(differ)}); group them with group_jobs first")
    runs, outcome = [], [None] * len(entries)
    # stop signals from here on: one that arrives while a job opens or compiles stops the
    # program after its first chunk, with a checkpoint (StopSignals)
    with StopSignals() as stop:
        for i, (cfg, run_dir, trainer) in enumerate(entries):
            run = JobRun(cfg, Path(run_dir), trainer)
            try:
                run.claim()
            except ConfigError as err:
                outcome[i] = err
                continue
            try:
                run.open()
            except Exception as err:
                run.failed(err)
                run.close()
                outcome[i] = err
                continue
            runs.append((i, run))
        by_step: dict[int | None, list] = {}
        for i, run in runs:
            by_step.setdefault(run.resume_step, []).append((i, run))
        interrupted: Exception | None = None
        for group in by_step.values():
            if interrupted is not None:  # not started: close without a summary, to run later
                for i, run in group:
                    run.close()
                    outcome[i] = interrupted
                continue
            first = group[0][1]
            parts = [run.part() for _, run in group]
            members = sum(len(p.seeds) for p in parts)
            keys = jnp.concatenate([run.keys for _, run in group])
            hparams = {k: np.concatenate([run.hparams()[k] for _, run in group])
                       for k in first.hparams()}
            print(f"[rnnlab] packed: jobs {', '.join(r.run_dir.name for _, r in group)} train as "
                  f"one program of {members} members", file=sys.stderr)
            trainer = first.trainer
            if first.cfg.model.bptt == "auto":  # resolved for this program's members per device
                from rnnlab.train import build_model

                model = build_model(first.cfg, trainer.task, trainer.model.cells,
                                    members=members)
                if model.bptt != trainer.model.bptt:
                    trainer = dataclasses.replace(trainer, model=model)
            try:
                results = fit_members(trainer, keys, parts, hparams=hparams,
                                      inits=[run.trainer.init for _, run in group],
                                      sharding=member_sharding(first.cfg, members), stop=stop,
                                      repack=repack, **fit_options(first.cfg))
            except Exception as err:
                if isinstance(err, Interrupted):
                    interrupted = err
                results = [err] * len(group)
            for (i, run), result in zip(group, results, strict=True):
                try:
                    if isinstance(result, Exception):
                        raise result
                    outcome[i] = run.finish(*result, members=members)
                except Exception as err:
                    run.failed(err)
                    outcome[i] = err
                finally:
                    run.close()
    return outcome


def run_group(group: list[PackedJob], repack: str = "auto") -> list[float | None]:
    """What ``python -m rnnlab.run`` does for each job of a sweep (:func:`rnnlab.run._job`),
    for the jobs of one packed group: a job that finished in an earlier run of the sweep is
    kept; a job with a bad value is refused alone (its folder records it; nothing compiled);
    the rest train as one program (:func:`execute_packed`). Returns each job's value (its main
    metric's seed mean; None when it failed)."""
    from rnnlab.loop import Interrupted, build, summary_line

    values: list[float | None] = [None] * len(group)
    ready = []
    for k, job in enumerate(group):
        if jobs.skip_if_stopped(job.run_dir, job.num, job.overrides):
            continue
        with jobs.console_to_run_log(job.run_dir):
            done, values[k] = jobs.earlier_result(job.run_dir, job.cfg, job.num, job.overrides)
            if done:
                continue
            try:
                jobs.use_compilation_cache(job.cfg)
                ready.append((k, build(job.cfg)))
            except ConfigError as err:
                jobs.record_failed_job(job.run_dir, err, job.cfg)
                _failed(job, err)
    if not ready:
        return values
    outcome = []
    for batch in memory_batches([(group[k].cfg, trainer) for k, trainer in ready]):
        part = [ready[i] for i in batch]
        with jobs.console_to_run_log(*(group[k].run_dir for k, _ in part)):
            outcome += execute_packed([(group[k].cfg, group[k].run_dir, trainer)
                                       for k, trainer in part], repack=repack)
    for (k, _), result in zip(ready, outcome, strict=True):
        job = group[k]
        with jobs.console_to_run_log(job.run_dir):
            if isinstance(result, Exception):
                if isinstance(result, ConfigError):
                    jobs.record_failed_job(job.run_dir, result, job.cfg)
                if isinstance(result, Interrupted):  # the sweep's later groups do not start
                    jobs.stop_sweep(result)
                _failed(job, result)
                continue
            print(summary_line(result))
            print(f"[rnnlab] run folder: {job.run_dir}")
            main = result["main_metric"]["name"]
            values[k] = result["final"].get(main, {}).get("mean")
    return values


def memory_batches(jobs_: list[tuple[DictConfig, Any]]) -> list[list[int]]:
    """The jobs (``(cfg, trainer)``, each already known to fit alone:
    :func:`rnnlab.train.check_memory`) cut, in order, into programs whose members' training
    state and gradients together fit the devices' memory (one program when they all do, or
    when the memory is unknown); indices into ``jobs_``. Prints a line when it cuts."""
    from rnnlab.train import device_memory_bytes, training_bytes

    have = device_memory_bytes()
    if not have:
        return [list(range(len(jobs_)))]
    batches: list[list[int]] = [[]]
    used = 0
    for i, (cfg, trainer) in enumerate(jobs_):
        need = training_bytes(trainer, cfg.train.num_seeds)
        if batches[-1] and used + need > have:
            batches.append([])
            used = 0
        batches[-1].append(i)
        used += need
    if len(batches) > 1:
        print(f"[rnnlab] packed: the {len(jobs_)} jobs' members do not fit the "
              f"{have / 2 ** 30:.1f} GiB of memory in one program; they train as "
              f"{len(batches)} programs", file=sys.stderr)
    return batches


def _failed(job: PackedJob, err: Exception) -> None:
    from rnnlab.loop import Interrupted

    word = "INTERRUPTED" if isinstance(err, Interrupted) else "FAILED"
    jobs.fail(f"[rnnlab] job {job.num} ({job.overrides}) {word}: {type(err).__name__}: {err}"
              f"\n[rnnlab] its run folder: {job.run_dir}", jobs.EXIT_FAILED)
