"""rnnlab's versions of the launcher and sweeper plugins behind ``conf/hydra/launcher`` and
``conf/hydra/sweeper`` (Hydra instantiates plugins only from the ``hydra_plugins`` namespace).
Each class exists only when its plugin is installed (``pip install "rnnlab[cluster]"``); the
shared logic is in :mod:`rnnlab.launchers`.
"""

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rnnlab.launchers import (
    BEST,
    DIRECTIONS,
    SharesOneGpu,
    cpu_count,
    importable,
    refuse,
    task_direction,
    write_best,
)

if importable("hydra_plugins.hydra_joblib_launcher"):
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import (
        JoblibLauncher as _PluginJoblibLauncher,
    )

    class JoblibLauncher(SharesOneGpu, _PluginJoblibLauncher):
        """hydra-joblib-launcher (``hydra/launcher=joblib``): ``n_jobs`` jobs at a time, each
        in a worker process of its own (joblib's loky backend), sharing this machine's GPU.

        Args:
            gpu_memory_fraction: each job's ``XLA_PYTHON_CLIENT_MEM_FRACTION``; None:
                ``0.9 / jobs at once`` (:func:`rnnlab.launchers.jax_memory_env`).
            preallocate: each job's ``XLA_PYTHON_CLIENT_PREALLOCATE``.
            **joblib: ``joblib.Parallel``'s arguments (``n_jobs``: jobs at once, -1 for one per
                CPU core).
        """

        def __init__(self, gpu_memory_fraction: float | None = None, preallocate: bool = False,
                     **joblib: Any) -> None:
            n_jobs = joblib.get("n_jobs")
            if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or not (
                    n_jobs >= 1 or n_jobs == -1):
                refuse(f"hydra.launcher.n_jobs must be an int >= 1, or -1 for one job per CPU "
                       f"core; got {n_jobs!r}")
            self._check_memory(gpu_memory_fraction, preallocate)
            super().__init__(**joblib)

        def launch(self, job_overrides, initial_job_idx):
            n_jobs = self.joblib["n_jobs"]
            concurrent = min(len(job_overrides), cpu_count() if n_jobs == -1 else n_jobs)
            return super().launch(self._with_memory_env(job_overrides, max(concurrent, 1)),
                                  initial_job_idx)


if importable("hydra_plugins.hydra_submitit_launcher"):
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher as _PluginLocalLauncher,
    )

    class SubmititLocalLauncher(SharesOneGpu, _PluginLocalLauncher):
        """hydra-submitit-launcher's local executor (``hydra/launcher=submitit_local``): every
        job of a batch starts at once in a process of its own, so each gets
        ``0.9 / jobs in the batch`` of the GPU's memory unless ``gpu_memory_fraction`` says
        otherwise. The other arguments are submitit's (see ``conf/hydra/launcher``)."""

        def __init__(self, gpu_memory_fraction: float | None = None, preallocate: bool = False,
                     **params: Any) -> None:
            self._check_memory(gpu_memory_fraction, preallocate)
            super().__init__(**params)

        def launch(self, job_overrides, initial_job_idx):
            return super().launch(self._with_memory_env(job_overrides, len(job_overrides)),
                                  initial_job_idx)


if importable("hydra_plugins.hydra_optuna_sweeper"):
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import (
        OptunaSweeper as _PluginOptunaSweeper,
    )

    # optuna imports alembic, whose import logs INFO lines into the sweep's console
    logging.getLogger("alembic").setLevel(logging.WARNING)

    class OptunaSweeper(_PluginOptunaSweeper):
        """hydra-optuna-sweeper (``hydra/sweeper=optuna``) with rnnlab's objective.

        Each trial is one job; its objective is the value the job returns, the task's main
        held-out metric (``summary.json``'s ``final[main_metric].mean``, the mean over seeds).
        ``direction: auto`` takes the direction from the task (its ``maximize`` class
        attribute); ``minimize``/``maximize`` force one. A job that fails (bad value, every seed
        diverged) returns None and becomes a failed trial: the study goes on, and a study in
        which no trial finished ends without an error of its own (the sweep then exits with
        status 1, like any sweep with a failed job). At the end the sweep folder gets the
        plugin's ``optimization_results.yaml`` and ``best.yaml``
        (:func:`rnnlab.launchers.write_best`).

        A sweep over ``task`` is refused: the trials of one study share one objective.
        """

        def __init__(self, direction: str = "auto", **kwargs: Any) -> None:
            if direction not in DIRECTIONS:
                refuse(f"hydra.sweeper.direction must be one of {', '.join(DIRECTIONS)}; "
                       f"got {direction!r}")
            for key in ("n_trials", "n_jobs"):
                value = kwargs.get(key)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    refuse(f"hydra.sweeper.{key} must be an int >= 1; got {value!r}")
            self.direction = direction
            super().__init__(direction="minimize", **kwargs)  # set in setup(), from the task

        def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
            super().setup(hydra_context=hydra_context, task_function=task_function,
                          config=config)
            from rnnlab.tasks import get_task_class

            task = config.task.name
            self.metric = get_task_class(task).main_metric
            if self.direction == "auto":
                self.direction = task_direction(task)
            self.sweeper.direction = self.direction
            self.sweep_dir = Path(str(config.hydra.sweep.dir))

        def _check_choices(self, override) -> None:
            """Composes the config with each value of a choice sweep, so that a value that does
            not compose (``cell=choice(lstm,lstn)``) stops the study before any trial runs,
            not when a trial draws it."""
            from hydra.errors import HydraException
            from omegaconf.errors import OmegaConfBaseException

            key = override.get_key_element()
            loader = self.sweeper.hydra_context.config_loader
            for value in override.sweep_string_iterator():
                try:
                    loader.load_sweep_config(self.sweeper.config, [f"{key}={value}"])
                except (HydraException, OmegaConfBaseException) as err:
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    refuse(f"{key}={value} in {override.input_line} does not compose: {first}")

        def sweep(self, arguments: list[str]) -> None:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            parser = OverridesParser.create()
            # a parameter fixed on the command line leaves the preset's search space here, not
            # after the plugin has built a GridSampler from it (which then fails on intervals)
            fixed = {o.get_key_element() for o in parser.parse_overrides(arguments)
                     if not o.is_sweep_override()}
            if self.sweeper.params:
                self.sweeper.params = {k: v for k, v in self.sweeper.params.items()
                                       if k not in fixed}
            params = [f"{k}={v}" for k, v in (self.sweeper.params or {}).items()]
            for override in parser.parse_overrides([*params, *arguments]):
                if override.get_key_element() == "task" and override.is_sweep_override():
                    refuse(f"hydra/sweeper=optuna cannot sweep task ({override.input_line}): "
                           "one study optimises one task's main metric; run one study per task")
                if override.is_choice_sweep():
                    self._check_choices(override)
            try:
                self.sweeper.sweep(arguments)
            except ValueError as err:  # Optuna's study.best_trial when no trial completed
                if "No trials are completed yet" not in str(err):
                    raise
            except RuntimeError as err:
                # the plugin tells a failed trial outside its guard for GridSampler's
                # study.stop(), raised once every grid point has been tried: the study is over
                if "Study.stop" not in str(err):
                    raise
            best = write_best(self.sweep_dir, self.direction, self.metric)
            if best is None:
                print(f"[rnnlab] optuna: no trial finished; {self.sweep_dir / BEST}")
            else:
                print(f"[rnnlab] optuna: best {self.metric} {best['mean']:.4g} "
                      f"({self.direction}) in job {best['job']} ({best['overrides']}); "
                      f"{self.sweep_dir / BEST}")
