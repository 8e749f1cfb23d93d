"""The task contract and registry.

A task is a frozen dataclass of its sizes with pure, jittable methods:

* ``sample(key, batch_size) -> Batch``: a training batch, generated on the device.
* ``eval_batch(key, batch_size) -> Batch``: the held-out evaluation batch (``batch_size``
  fresh sequences from a key stream never used for training, for synthetic tasks; every
  validation window, whatever ``batch_size``, for data sets).
* ``loss(out, batch) -> scalar`` and ``metrics(out, batch) -> dict`` of scalars.
* ``baselines() -> dict[str, float]``: analytic baselines logged beside the model's numbers,
  keyed like the metric they compare with (``loss`` for the memoryless cross-entropy, ...).
* ``solved(metrics) -> bool``: the task's "solved" criterion.

Class attributes say how the model reads the task: ``readout`` (``every`` step or the
``last``), ``vocab_size`` (token inputs) or ``input_size`` (real inputs) and ``output_size``;
``main_metric`` and ``maximize`` name the held-out metric that ranks runs (sweep tables,
hyperparameter searches).

Targets at positions of weight 0 may hold anything (NaN, a padding label): the shared losses
(:func:`weighted_mean`, :func:`cross_entropy`) select them away before any arithmetic.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.registry import Registry

TASK_REGISTRY = Registry("task")
TASKS = TASK_REGISTRY.entries
register_task = TASK_REGISTRY.register
get_task_class = TASK_REGISTRY.get
make_task = TASK_REGISTRY.make
task_schema = TASK_REGISTRY.schema


class Batch(NamedTuple):
    """One batch. ``x`` is int ``[B, T]`` tokens or float ``[B, T, D]``; ``y`` the targets;
    ``weight`` the loss weight of each target (same leading shape as ``y``'s labels);
    ``seq_lengths`` optional int ``[B]``."""

    x: jax.Array
    y: jax.Array
    weight: jax.Array
    seq_lengths: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class; see the module docstring."""

    readout: ClassVar[str] = "every"
    main_metric: ClassVar[str] = "loss"  # the held-out metric a sweep ranks runs by
    maximize: ClassVar[bool] = False  # whether a larger main_metric is better
    vocab_size: ClassVar[int | None] = None
    input_size: ClassVar[int | None] = None
    output_size: ClassVar[int] = 1

    @property
    def sequence_length(self) -> int:
        raise NotImplementedError

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        raise NotImplementedError

    def eval_batch(self, key: jax.Array, batch_size: int) -> Batch:
        return self.sample(key, batch_size)

    def loss(self, out, batch: Batch) -> jax.Array:
        raise NotImplementedError

    def metrics(self, out, batch: Batch) -> dict[str, jax.Array]:
        return {"loss": self.loss(out, batch)}

    def baselines(self) -> dict[str, float]:
        return {}

    def solved(self, metrics: dict[str, float]) -> bool:
        return False

    def final_metrics(self, trainer, state, alive) -> dict[str, Any]:
        """Held-out metrics of the final ``state`` computed on the host, one value per seed
        (``[S]`` arrays, seeds in ``state``'s order; NaN for a seed not ``alive``). They join
        the final evaluation's metrics in ``summary.json`` (``final``, ``per_seed``) before
        the ``main_metric`` is read, so a task can rank runs by a metric the jitted
        ``metrics`` cannot give (e.g. forecasts in the series' own units)."""
        return {}

    def final_report(self, trainer, state, alive, refit=None) -> dict[str, Any]:
        """Extra results for ``summary.json`` after training (e.g. test-span forecasts in
        the series' units against baselines). ``state`` is vmapped over seeds; ``refit(task)
        -> (trainer, state, alive)`` trains the same config and seeds on another task (the
        forecast task's other folds), silently."""
        return {}

    def label(self) -> str:
        """``name(field=value, ...)`` for titles and tables."""
        fields = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                           if not isinstance(getattr(self, f.name), list | tuple | dict))
        return f"{self.registered_name}({fields})"

    def describe(self) -> dict[str, Any]:
        """Static facts logged with every run."""
        return {"task": self.registered_name, "task_label": self.label(),
                "sequence_length": self.sequence_length,
                **{f"baseline/{k}": v for k, v in self.baselines().items()}}


def weighted_mean(values, weight):
    """``sum(values * weight) / sum(weight)`` (0 when every weight is 0). Positions of weight 0
    are left out even when their value is NaN or inf (padding, missing targets): they are
    selected away with ``jnp.where``, never multiplied by 0."""
    kept = jnp.where(weight > 0, values, jnp.zeros((), values.dtype))
    return jnp.sum(kept * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def valid_labels(labels, weight):
    """``labels`` with the positions of weight 0 set to class 0, so that a padding label
    (``-1``, ``-100``, out of range) never indexes out of bounds: ``take_along_axis`` would
    read NaN there, and NaN times a zero weight is still NaN in the gradient."""
    return jnp.where(weight > 0, labels, jnp.zeros((), labels.dtype))


def cross_entropy(logits_BxTxC, labels_BxT, weight_BxT):
    """Mean cross-entropy in nats over the weighted positions."""
    logp = jax.nn.log_softmax(logits_BxTxC.astype(jnp.float32), axis=-1)
    labels_BxT = valid_labels(labels_BxT, weight_BxT)
    nll = -jnp.take_along_axis(logp, labels_BxT[..., None], axis=-1)[..., 0]
    return weighted_mean(nll, weight_BxT)


def accuracy(logits_BxTxC, labels_BxT, weight_BxT):
    correct = (jnp.argmax(logits_BxTxC, axis=-1) == labels_BxT).astype(jnp.float32)
    return weighted_mean(correct, weight_BxT)


# ---- helpers shared by the generators ---------------------------------------------------------
def random_subsets(key, batch_size: int, population: int, count: int) -> jax.Array:
    """Per row, ``count`` distinct draws from ``0 .. population-1``, uniformly chosen, in
    random order: int32 ``[batch_size, count]``, the indices of the ``count`` largest of
    i.i.d. uniforms (the head of a random permutation, without a full sort)."""
    u_BxN = jax.random.uniform(key, (batch_size, population), jnp.float32)
    return jax.lax.top_k(u_BxN, count)[1].astype(jnp.int32)


def sorted_random_positions(key, batch_size: int, num_slots: int, count: int) -> jax.Array:
    """``count`` distinct positions out of ``0 .. num_slots-1`` per row, uniformly chosen, in
    increasing order: int32 ``[batch_size, count]``."""
    return jnp.sort(random_subsets(key, batch_size, num_slots, count), axis=1)


def check_int(task: str, name: str, value, minimum: int, minimum_name: str = "") -> None:
    """Raises ``ValueError`` unless ``value`` is an int >= ``minimum`` (named ``minimum_name``
    in the message when the bound is another field)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        bound = f"{minimum_name}={minimum}" if minimum_name else f"{minimum}"
        raise ValueError(f"{task} task: {name} must be an int >= {bound}; got {value!r}")
