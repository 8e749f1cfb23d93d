"""Gradient norms through time: how ``||dL/dh_t||`` changes with the distance from the readout.

The driver (:mod:`rnnlab.recurrent`) adds a zero probe ``eps_t`` to each layer's carry at
every step when the ``probes`` collection is passed, where the cell produces each carry field
(:meth:`rnnlab.cells.base.Cell.probed_step`: the LSTM family adds ``eps_c`` to ``c_t`` before
``h_t = o_t tanh(c_t)`` reads it). The gradient of the loss with respect to the probe is
``dL/d carry_t``, the total derivative through every later use (the same step's output and all
later steps), equal to autograd's ``c_t.grad``/``h_t.grad`` of a hand-unrolled network, and it
comes out of the same backward pass as the parameter gradients. Without the collection the
probe does not exist, so training without it costs nothing.

Shape legend: B batch, T time, H hidden, L layers.

Per layer and carry field (``h``, and ``c`` for the LSTM family) we report, for each ``t``, the
batch mean and standard deviation of the Euclidean norm over ``H``. Two summaries per curve,
with ``d = T - 1 - t`` the distance from the end of the sequence (where the loss is read):

* ``half_life``: the least-squares slope ``s`` of ``ln ||dL/dh_t||`` against ``d`` gives
  ``ln 2 / -s`` steps, the distance over which the gradient halves (``inf`` when it does not
  decay);
* ``first_last_ratio``: ``||dL/dh_0|| / ||dL/dh_{T-1}||``.

Exact zeros (padding; a curve that no loss reaches) are left out of both, and the ratio uses
the last step with a nonzero gradient.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from rnnlab.recurrent import PROBE_NAME, PROBES

SLOPE_TOL = 1e-12  # |log-slope| per step below which a curve counts as flat


def probe_zeros(model, params, *args, **kwargs):
    """Zero probes for every recurrent layer of ``model`` at these input shapes, without
    running the model (shapes via ``jax.eval_shape``)."""
    def shapes():
        _, variables = model.apply({"params": params}, *args, mutable=[PROBES], **kwargs)
        return variables[PROBES]

    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(shapes))


def loss_and_gradients(loss_fn: Callable[[Any, Any], tuple[jax.Array, Any]], params, probes):
    """``loss_fn(params, probes) -> (loss, aux)``; returns ``(loss, aux, param_grads,
    probe_grads)`` from one backward pass."""
    (loss, aux), (g_params, g_probes) = jax.value_and_grad(loss_fn, argnums=(0, 1),
                                                           has_aux=True)(params, probes)
    return loss, aux, g_params, g_probes


def layer_name(path: tuple[str, ...]) -> str:
    """``('recurrent', 'layer_0', 'carry')`` -> ``'layer_0'``; keeps the path below the model."""
    parts = [p for p in path if p not in (PROBE_NAME, "recurrent")]
    return "/".join(parts) or "layer"


def norms_through_time(probe_grads, seq_lengths_B=None) -> dict[str, dict[str, jax.Array]]:
    """Batch mean and std of ``||dL/d carry_t||`` for each ``t``.

    Returns ``{"layer_0/h": {"mean": [T], "std": [T]}, "layer_0/c": ...}``. With
    ``seq_lengths_B``, padded positions are left out of the batch statistics (their gradient
    is zero by construction) and reported as NaN where no example is valid."""
    out = {}
    for path, carry in flatten_dict(probe_grads).items():
        for field, g_TxBxH in carry._asdict().items():
            n_TxB = jnp.sqrt(jnp.sum(jnp.square(g_TxBxH.astype(jnp.float32)), axis=-1))
            if seq_lengths_B is None:
                mean, std = n_TxB.mean(axis=1), n_TxB.std(axis=1)
            else:
                T = n_TxB.shape[0]
                w_TxB = (jnp.arange(T)[:, None] < seq_lengths_B[None, :]).astype(jnp.float32)
                count = w_TxB.sum(axis=1)
                mean = (n_TxB * w_TxB).sum(axis=1) / count
                std = jnp.sqrt((jnp.square(n_TxB - mean[:, None]) * w_TxB).sum(axis=1) / count)
            out[f"{layer_name(path)}/{field}"] = {"mean": mean, "std": std}
    return out


def half_life(norms_T: np.ndarray) -> float:
    """Steps over which ``norms_T`` halves, from a least-squares fit of its log against the
    distance from the last step; ``inf`` if it does not decay."""
    norms_T = np.asarray(norms_T, dtype=np.float64)
    valid = np.isfinite(norms_T) & (norms_T > 0)
    if valid.sum() < 2:
        return float("nan")
    d = (len(norms_T) - 1 - np.arange(len(norms_T)))[valid]
    slope = np.polyfit(d, np.log(norms_T[valid]), 1)[0]
    # a flat curve fits a slope of rounding size (~1e-16) and either sign: that is no decay
    return float(math.log(2.0) / -slope) if slope < -SLOPE_TOL else float("inf")


def first_last_ratio(norms_T: np.ndarray) -> float:
    """``norms_T[0]`` over the last finite nonzero norm (NaN if there is none)."""
    norms_T = np.asarray(norms_T, dtype=np.float64)
    nonzero = np.flatnonzero(np.isfinite(norms_T) & (norms_T > 0))
    if nonzero.size == 0:
        return float("nan")
    return float(norms_T[0] / norms_T[nonzero[-1]])


def summarize(curves: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Half-life and first/last ratio of each mean curve, keyed ``NAME/half_life``..."""
    out = {}
    for name, stats in curves.items():
        mean = np.asarray(stats["mean"])
        out[f"{name}/half_life"] = half_life(mean)
        out[f"{name}/first_last_ratio"] = first_last_ratio(mean)
    return out
