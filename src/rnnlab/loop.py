"""The host side of a run: all seeds of one config in one jitted, vmapped program, run in
chunks of ``train.log_every`` steps with logging, evaluation, gradient probes, divergence
checks and early stopping between chunks.

``execute(cfg, run_dir)`` is what ``python -m rnnlab.run`` calls for each job.
"""

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from rnnlab import gradients
from rnnlab.logging import LocalSink, Logger, WandbSink
from rnnlab.train import LOSS, Trainer, make_train, param_count, seed_keys


def _host(tree) -> dict:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _select(mask_S, new, old):
    """Per-seed choice between two vmapped pytrees."""
    def pick(n, o):
        m = jnp.reshape(mask_S, mask_S.shape + (1,) * (n.ndim - 1))
        return jnp.where(m, n, o)

    return jax.tree.map(pick, new, old)


def fit(trainer: Trainer, keys: jax.Array, logger: Logger, seeds: list[int], *,
        gradients_every: int | None, patience: int | None = None, progress: bool = True):
    """Trains all seeds together. Returns ``(state, eval_metrics, info)``; with ``patience``,
    the state is each seed's best on the held-out loss (Keras' ``restore_best_weights``).

    Raises ``FloatingPointError(step, losses)`` when every seed has diverged; a single
    diverged seed is logged as an event and left out of the summary."""
    init = jax.jit(jax.vmap(trainer.init))
    chunk = jax.jit(jax.vmap(trainer.run_chunk))
    evaluate = jax.jit(jax.vmap(trainer.evaluate))
    probe = jax.jit(jax.vmap(trainer.probe))
    select = jax.jit(_select)

    state = init(keys)
    ev = _host(evaluate(state))
    logger.log(0, "eval", ev, seeds)
    if gradients_every is not None:
        logger.log_gradients(0, _host(probe(state)), seeds)

    S = len(seeds)
    alive = np.ones(S, bool)
    best_loss = np.where(np.isfinite(ev[LOSS]), ev[LOSS], np.inf)
    best_state, best_step = state, np.zeros(S, int)
    since_best = np.zeros(S, int)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trainer.steps, unit="step", dynamic_ncols=True, leave=False)
    step, stopped_early = 0, False
    t0 = time.perf_counter()
    try:
        for _ in range(trainer.num_chunks):
            state, tm = chunk(state)
            ev = evaluate(state)
            tm, ev = _host(tm), _host(ev)
            step += trainer.chunk_size
            logger.log(step, "train", tm, seeds)
            logger.log(step, "eval", ev, seeds)
            finite = np.isfinite(tm[LOSS]) & np.isfinite(ev[LOSS])
            for i in np.flatnonzero(alive & ~finite):
                logger.event("diverged", seed=seeds[i], step=step,
                             train_loss=float(tm[LOSS][i]), eval_loss=float(ev[LOSS][i]))
            alive &= finite
            if not alive.any():
                raise FloatingPointError(
                    f"training diverged: non-finite loss at step {step} for every seed "
                    f"(train losses {tm[LOSS].tolist()}); lower optim.learning_rate or set "
                    f"optim.grad_clip")
            last_chunk = step == trainer.steps
            if gradients_every is not None and (
                    last_chunk or (gradients_every and step % gradients_every == 0)):
                logger.log_gradients(step, _host(probe(state)), seeds)
            if bar is not None:
                bar.update(trainer.chunk_size)
                bar.set_postfix({k: f"{np.nanmean(v):.4g}" for k, v in ev.items()})
            if patience is not None:
                improved = alive & (ev[LOSS] < best_loss)
                best_loss = np.where(improved, ev[LOSS], best_loss)
                best_step = np.where(improved, step, best_step)
                since_best = np.where(improved, 0, since_best + 1)
                best_state = select(jnp.asarray(improved), state, best_state)
                if np.all(since_best[alive] >= patience):
                    stopped_early = True
                    break
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    if patience is not None:
        state = best_state
        ev = _host(evaluate(state))
    info = {"steps_run": step, "alive": alive, "stopped_early": stopped_early,
            "best_step": best_step if patience is not None else None,
            "train_seconds": wall, "steps_per_second": step / max(wall, 1e-9)}
    return state, ev, info


def _spread(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "median": math.nan,
                "max": math.nan}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "median": float(np.median(v)), "max": float(v.max())}


def summarize(cfg, trainer: Trainer, seeds: list[int], ev: dict, info: dict,
              grad_summary: dict) -> dict[str, Any]:
    task = trainer.task
    alive = info["alive"]
    per_seed = {str(s): {k: float(v[i]) for k, v in ev.items()} | {
        "solved": bool(task.solved({k: float(v[i]) for k, v in ev.items()})),
        "diverged": not bool(alive[i])} for i, s in enumerate(seeds)}
    live = {k: np.asarray(v)[alive] for k, v in ev.items()}
    widths = [c.hidden_size for c in trainer.model.cells]
    return {
        "status": "ok",
        "title": (f"{task.label()} · {cfg.cell.name} widths={widths} · "
                  f"{param_count(trainer):,} params"),
        "cell": cfg.cell.name,
        "task": task.registered_name,
        "sequence_length": task.sequence_length,
        "hidden_sizes": widths,
        "param_count": param_count(trainer),
        "seeds": seeds,
        "baselines": task.baselines(),
        "final": {k: _spread(v) for k, v in live.items()},
        "per_seed": per_seed,
        "solved_fraction": float(np.mean([p["solved"] for p in per_seed.values()])),
        "gradients": grad_summary,
        **{k: v for k, v in info.items() if k != "alive"},
    }


def summary_line(summary: dict) -> str:
    """The line a run ends with: per metric mean ± std over seeds, the baseline, per seed."""
    parts = []
    for name, stats in summary["final"].items():
        base = summary["baselines"].get(name)
        text = f"{name} {stats['mean']:.4g} ± {stats['std']:.2g}"
        if base is not None:
            text += f" (baseline {base:.4g})"
        parts.append(text)
    seeds = "; ".join(
        f"seed {s}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()
                                  if isinstance(v, float)) + (" DIVERGED" if m["diverged"]
                                                              else "")
        for s, m in summary["per_seed"].items())
    return f"[rnnlab] {summary['title']}\n[rnnlab] {' | '.join(parts)}\n[rnnlab] {seeds}"


def gradient_summary(logger: Logger) -> dict[str, float]:
    """Half-life and first/last ratio of the first and last measurement (seed mean)."""
    local = next((s for s in logger.sinks if isinstance(s, LocalSink)), None)
    if local is None or not local.grad_steps:
        return {}
    out = {}
    for when, m in (("init", 0), ("final", -1)):
        curves = {name: {"mean": np.nanmean(slot["mean"][m], axis=0)}
                  for name, slot in local.grad_curves.items()}
        out.update({f"{when}/{k}": v for k, v in gradients.summarize(curves).items()})
    return out


def make_logger(cfg, run_dir: Path) -> Logger:
    w = cfg.logger.wandb
    group = w.group or (run_dir.parent.name if _in_sweep() else None)
    name = f"{cfg.task.name}-{cfg.cell.name}-{run_dir.name}"
    return Logger([LocalSink(run_dir, plots=cfg.logger.plots),
                   WandbSink(run_dir, mode=w.mode, project=w.project, entity=w.entity,
                             group=group, tags=[cfg.cell.name, cfg.task.name, *w.tags],
                             name=name)])


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def execute(cfg, run_dir: str | Path) -> dict[str, Any]:
    """One job: builds everything from ``cfg``, trains all seeds, logs into ``run_dir``.

    Whatever happens, ``summary.json`` ends with a ``status`` (``ok`` or ``failed`` with the
    error) and every metric logged before a failure stays in the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = None
    try:
        trainer = make_train(cfg)
        seeds = list(range(cfg.train.seed, cfg.train.seed + cfg.train.num_seeds))
        logger = make_logger(cfg, run_dir)
        info = {"param_count": param_count(trainer), "seeds": seeds,
                "hidden_sizes": [c.hidden_size for c in trainer.model.cells],
                "jax_backend": jax.default_backend(), **trainer.task.describe()}
        logger.start(OmegaConf.to_container(cfg, resolve=True), info)
        g = cfg.gradients
        state, ev, fit_info = fit(
            trainer, seed_keys(cfg), logger, seeds,
            gradients_every=(g.every if g.enabled else None),
            patience=cfg.train.early_stopping_patience, progress=cfg.logger.progress)
        summary = summarize(cfg, trainer, seeds, ev, fit_info, gradient_summary(logger))
        def refit(task):  # the same config and seeds on another task (a forecast fold)
            again = dataclasses.replace(trainer, task=task)
            st, _, inf = fit(again, seed_keys(cfg), Logger([]), seeds, gradients_every=None,
                             patience=cfg.train.early_stopping_patience, progress=False)
            return again, st, inf["alive"]

        summary.update(trainer.task.final_report(trainer, state, fit_info["alive"],
                                                 refit=refit))
    except Exception as err:
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                   "title": run_dir.name}
        if logger is None:
            logger = Logger([LocalSink(run_dir, plots=False)])
        logger.event("failed", error=summary["error"])
        logger.finish(summary)
        raise
    logger.finish(summary)
    return summary
