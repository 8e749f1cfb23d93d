"""rnnlab's packed launcher (``hydra/launcher=packed``): the jobs of a sweep that differ only
in packable values (:data:`rnnlab.packing.PACKABLE`: seeds, learning rate, weight decay,
clipping, initialisers and forget-gate bias, and the dropout rate among jobs with dropout) train
as the members of one compiled program, one program per group of such jobs.
Needs no extra package. See :mod:`rnnlab.packing`.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class PackedLauncher(Launcher):
    """Runs a sweep's jobs in this process, packed into as few programs as their configs
    allow (:func:`rnnlab.packing.group_jobs`).

    Hydra makes every job's folder (``.hydra/``, its log) as it does for the basic launcher;
    then each group trains as one program (:func:`rnnlab.packing.run_group`) and every job
    gets its own return value (its main metric), so the sweep's callbacks (``sweep.csv``,
    ``sweep.md``, the exit status) see one job per folder as usual.

    Args:
        max_members: the most members (seeds, summed over a group's jobs) one program may
            have; a larger group is cut between jobs. None: no limit.
        repack: when a program continues without the members of jobs that stopped (every
            seed diverged, or stopped early): ``auto``, ``always`` or ``never``
            (:func:`rnnlab.loop.fit_members`).
    """

    def __init__(self, max_members: int | None = None, repack: str = "auto") -> None:
        from rnnlab.launchers import refuse
        from rnnlab.loop import REPACK

        if max_members is not None and (not isinstance(max_members, int)
                                        or isinstance(max_members, bool) or max_members < 1):
            refuse(f"hydra.launcher.max_members must be an int >= 1 or null (no limit); got "
                   f"{max_members!r}")
        if repack not in REPACK:
            refuse(f"hydra.launcher.repack must be one of {', '.join(REPACK)}; got {repack!r}")
        self.max_members, self.repack = max_members, repack
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from rnnlab import jobs, packing

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        groups = packing.group_jobs([jobs.job_config(c) for c in configs], self.max_members)
        returns: list[JobReturn | None] = [None] * len(configs)
        for group in groups:
            handed: list = []
            prepare = _prepare(handed)
            for i in group:  # Hydra makes the folder and its .hydra/ files; nothing trains yet
                returns[i] = run_job(hydra_context=self.hydra_context, task_function=prepare,
                                     config=configs[i], job_dir_key="hydra.sweep.dir",
                                     job_subdir_key="hydra.sweep.subdir")
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            # while the group trains: the first job's logging (Hydra's job logging), as a job
            # launched alone trains under its own
            configure_log(configs[group[0]].hydra.job_logging, self.config.hydra.verbose)
            try:
                values = packing.run_group(handed, repack=self.repack)
            finally:
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for i, value in zip(group, values, strict=True):
                returns[i].return_value = value
        return returns


def _prepare(handed: list) -> TaskFunction:
    """A task function that trains nothing: it hands the job (config, folder) over."""
    from rnnlab.packing import PackedJob

    def prepare(cfg: DictConfig) -> None:
        hc = HydraConfig.get()
        handed.append(PackedJob(cfg, Path(hc.runtime.output_dir), int(hc.job.num),
                                hc.job.override_dirname))

    return prepare
