"""rnnlab's versions of the launcher and sweeper plugins behind ``conf/hydra/launcher`` and
``conf/hydra/sweeper`` (Hydra instantiates plugins only from the ``hydra_plugins`` namespace).
Each class exists only when its plugin is installed (``pip install "rnnlab[cluster]"``); the
shared logic is in :mod:`rnnlab.launchers`.
"""

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rnnlab.launchers import (
    BEST,
    DIRECTIONS,
    SharesOneGpu,
    cpu_count,
    importable,
    job_run_dir,
    lost_job,
    refuse,
    started_since,
    task_direction,
    write_best,
)

log = logging.getLogger(__name__)

if importable("hydra_plugins.hydra_joblib_launcher"):
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import (
        JoblibLauncher as _PluginJoblibLauncher,
    )
    from joblib import Parallel, delayed

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
            """Runs the jobs as the plugin does (``joblib.Parallel`` over loky workers) and
            survives a worker's death: loky then stops every worker and joblib raises
            ``TerminatedWorkerError``. The jobs that had returned keep their results; those
            that had started run again one at a time, each in a worker of its own, so that
            the one whose process dies again is recorded as failed
            (:func:`rnnlab.launchers.lost_job`) and the others resume from their
            checkpoints; then the jobs not yet started run as before."""
            from hydra.core.singleton import Singleton
            from hydra.core.utils import configure_log, filter_overrides, setup_globals
            from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
            from joblib.externals.loky.process_executor import TerminatedWorkerError

            n_jobs = self.joblib["n_jobs"]
            concurrent = min(len(job_overrides), cpu_count() if n_jobs == -1 else n_jobs)
            job_overrides = self._with_memory_env(job_overrides, max(concurrent, 1))
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            options = {**self.joblib, "backend": "loky"}  # loky: Hydra needs processes
            process_joblib_cfg(options)
            log.info("Joblib.Parallel(%s) is launching %d jobs",
                     ",".join(f"{k}={v}" for k, v in options.items()), len(job_overrides))
            for idx, overrides in enumerate(job_overrides):
                log.info("\t#%d : %s", initial_job_idx + idx,
                         " ".join(filter_overrides(overrides)))
            state = Singleton.get_state()
            results: dict[int, Any] = {}

            def args(pos):
                return (pos, initial_job_idx + pos, job_overrides[pos], self.hydra_context,
                        self.config, self.task_function, state)

            todo = list(range(len(job_overrides)))
            while todo:
                since = time.time()
                try:
                    for pos, ret in Parallel(**options, return_as="generator_unordered")(
                            delayed(_execute_job)(*args(p)) for p in todo):
                        results[pos] = ret
                    break
                except TerminatedWorkerError as err:
                    left = [p for p in todo if p not in results]
                    started = [p for p in left if started_since(
                        job_run_dir(self.hydra_context, self.config, job_overrides[p],
                                    initial_job_idx + p), since)] or left
                    log.warning("a joblib worker died (exit codes %s); rerunning the %d jobs "
                                "that had started, one at a time", _exit_codes(err),
                                len(started))
                for p in started:
                    pos, ret = _alone(args(p))
                    results[pos] = ret
                todo = [p for p in left if p not in results]
            return [results[p] for p in range(len(job_overrides))]

    def _execute_job(pos, *args):
        """(``pos``, the plugin's ``execute_job(*args)``): results arrive in any order."""
        from hydra_plugins.hydra_joblib_launcher._core import execute_job

        return pos, execute_job(*args)

    def _alone(args):
        """One job in a loky worker of its own (``Parallel(n_jobs=1)`` would run it in this
        process); a :func:`rnnlab.launchers.lost_job` when that worker dies."""
        from joblib.externals.loky import get_reusable_executor
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        pos, job_num, overrides, hydra_context, config = args[:5]
        executor = get_reusable_executor(max_workers=1)
        try:
            return executor.submit(_execute_job, *args).result()
        except TerminatedWorkerError as err:
            return pos, lost_job(hydra_context, config, overrides, job_num,
                                 f"its process died (exit code {_exit_codes(err)}): out of "
                                 "memory, a crash in native code, or killed")
        finally:  # loky's executor is one per process: joblib's Parallel, which runs the jobs
            # not yet started next, cannot reuse this plain one (it has no memmapping manager)
            executor.shutdown(wait=True)

    def _exit_codes(err) -> str:
        """``{SIGKILL(-9)}`` from loky's ``TerminatedWorkerError`` message."""
        text = str(err).partition("The exit codes of the workers are")[2].strip()
        return text.splitlines()[0] if text else "unknown"


if importable("hydra_plugins.hydra_submitit_launcher"):
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher as _PluginLocalLauncher,
    )
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _PluginSlurmLauncher,
    )

    class _SurvivesLostJobs:
        """``launch`` for the submitit launchers: submits the jobs as the plugin does (one
        array of jobs, each calling the launcher's ``__call__``), then waits for each on its
        own. A job that ends without a result (its process killed, by the out-of-memory
        killer or SLURM's time or memory limit, or crashed) is recorded as failed
        (:func:`rnnlab.launchers.lost_job`) instead of stopping the sweep with the
        plugin's ``UncompletedJobError`` before the later jobs are waited for."""

        _EXECUTOR: str
        params: dict
        config: DictConfig

        def _executor(self):
            import submitit
            from omegaconf import OmegaConf

            prefixed = {"max_num_timeout"}  # given to the executor itself, with its prefix
            executor = submitit.AutoExecutor(
                cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in prefixed})
            common = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{
                k if k in common else f"{self._EXECUTOR}_{k}": v
                for k, v in self.params.items() if k not in prefixed | {"submitit_folder"}})
            return executor

        def _submit_and_wait(self, job_overrides, initial_job_idx):
            from hydra.core.singleton import Singleton
            from hydra.core.utils import filter_overrides
            from submitit.core.utils import UncompletedJobError

            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
            log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
            state = Singleton.get_state()
            params = []
            for pos, overrides in enumerate(job_overrides):
                idx = initial_job_idx + pos
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               state))
            submitted = self._executor().map_array(self, *zip(*params, strict=True))
            results = []
            for (overrides, _, idx, _, _), job in zip(params, submitted, strict=True):
                try:
                    results.append(job.results()[0])
                except UncompletedJobError:
                    results.append(lost_job(
                        self.hydra_context, self.config, overrides, idx,
                        f"its process ended without a result (submitit job {job.job_id}, "
                        f"state {job.state}); its log: {job.paths.stderr}"))
            return results

    class SubmititLocalLauncher(SharesOneGpu, _SurvivesLostJobs, _PluginLocalLauncher):
        """hydra-submitit-launcher's local executor (``hydra/launcher=submitit_local``): every
        job of a batch starts at once in a process of its own, so each gets
        ``0.9 / jobs in the batch`` of the GPU's memory unless ``gpu_memory_fraction`` says
        otherwise. A job whose process dies is recorded as failed; the others go on. The other
        arguments are submitit's (see ``conf/hydra/launcher``)."""

        def __init__(self, gpu_memory_fraction: float | None = None, preallocate: bool = False,
                     **params: Any) -> None:
            self._check_memory(gpu_memory_fraction, preallocate)
            super().__init__(**params)

        def launch(self, job_overrides, initial_job_idx):
            return self._submit_and_wait(self._with_memory_env(job_overrides,
                                                               len(job_overrides)),
                                         initial_job_idx)

    class SubmititSlurmLauncher(_SurvivesLostJobs, _PluginSlurmLauncher):
        """hydra-submitit-launcher's SLURM executor (``hydra/launcher=submitit_slurm``): one
        array job per sweep. A job that SLURM ends without a result (time or memory limit,
        preemption, node failure) is recorded as failed; the sweep waits for the others and
        writes its tables. The arguments are submitit's (see ``conf/hydra/launcher``)."""

        def launch(self, job_overrides, initial_job_idx):
            return self._submit_and_wait(job_overrides, initial_job_idx)


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
