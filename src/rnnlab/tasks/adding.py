"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Arjovsky,
Shah & Bengio 2016, "Unitary evolution RNNs", section 4.2).

Shape legend: B batch, T time (``length``).

Input: float ``[B, T, 2]``. Channel 0 holds values drawn uniformly from ``[0, 1)``; channel 1
is ``1.0`` at exactly two positions and ``0.0`` elsewhere: one position uniform in the first
half ``[0, T // 2)``, the other uniform in the second half ``[T // 2, T)`` (Arjovsky et al.'s
placement; for odd ``T`` the second half is one step longer).
Target: float ``[B, 1]``, the sum of the two marked values. The model is read at the last step
(output ``[B, 1]``); the loss is the mean squared error.

Metrics: ``loss`` and ``mse`` (the same mean squared error; ``mse`` is the name used in the
papers), ``solved_fraction``: the fraction of sequences with absolute error below 0.04
(Hochreiter & Schmidhuber's criterion for a correctly processed sequence).

Baselines: always predicting 1 (the mean of the target) gives an MSE equal to the target's
variance, that of the sum of two independent U(0, 1) values: ``2/12 = 1/6 ≈ 0.1667``; its
``solved_fraction`` is ``P(|S - 1| < 0.04) = 2·0.04 - 0.04² = 0.0784`` (the triangular density
of the sum is ``1 - |s - 1|``).

Solved: ``solved_fraction >= 0.99``. When only the MSE was recorded, ``mse < 0.01`` stands in
as the secondary check: an RMS error of 0.1, about a quarter of the baseline's
``sqrt(1/6) ≈ 0.41``.
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, register_task, weighted_mean

TOLERANCE = 0.04  # Hochreiter & Schmidhuber 1997: a sequence is processed correctly below this
SOLVED_FRACTION = 0.99
SOLVED_MSE = 0.01


@register_task("adding")
@dataclasses.dataclass(frozen=True)
class AddingTask(Task):
    """Attributes:
      length: T, steps per sequence (>= 2, so each half holds a marker).
    """

    length: int = 100

    readout = "last"
    main_metric = "mse"
    maximize = False
    input_size = 2
    output_size = 1

    def __post_init__(self):
        if not isinstance(self.length, int) or isinstance(self.length, bool) or self.length < 2:
            raise ValueError(f"adding task: length must be an int >= 2 (one marker in each "
                             f"half); got {self.length!r}")

    @property
    def sequence_length(self) -> int:
        return self.length

    def sample(self, key, batch_size):
        T, half = self.length, self.length // 2
        k_values, k_first, k_second = jax.random.split(key, 3)
        values_BxT = jax.random.uniform(k_values, (batch_size, T), jnp.float32)
        first_B = jax.random.randint(k_first, (batch_size,), 0, half, jnp.int32)
        second_B = jax.random.randint(k_second, (batch_size,), half, T, jnp.int32)
        t_1xT = jnp.arange(T, dtype=jnp.int32)[None, :]
        marks_BxT = ((t_1xT == first_B[:, None]) | (t_1xT == second_B[:, None]))
        marks_BxT = marks_BxT.astype(jnp.float32)
        x_BxTx2 = jnp.stack([values_BxT, marks_BxT], axis=-1)
        y_Bx1 = jnp.sum(values_BxT * marks_BxT, axis=1, keepdims=True)
        return Batch(x_BxTx2, y_Bx1, jnp.ones((batch_size,), jnp.float32))

    def loss(self, out, batch):
        err_B = out[:, 0].astype(jnp.float32) - batch.y[:, 0]
        return weighted_mean(err_B**2, batch.weight)

    def metrics(self, out, batch):
        err_B = out[:, 0].astype(jnp.float32) - batch.y[:, 0]
        mse = weighted_mean(err_B**2, batch.weight)
        within_B = (jnp.abs(err_B) < TOLERANCE).astype(jnp.float32)
        return {"loss": mse, "mse": mse, "solved_fraction": weighted_mean(within_B, batch.weight)}

    def baselines(self):
        return {"loss": 1.0 / 6.0, "mse": 1.0 / 6.0,
                "solved_fraction": 2 * TOLERANCE - TOLERANCE**2}

    def solved(self, metrics):
        if "solved_fraction" in metrics:
            return bool(metrics["solved_fraction"] >= SOLVED_FRACTION)
        mse = metrics.get("mse", metrics.get("loss"))
        return mse is not None and bool(mse < SOLVED_MSE)
