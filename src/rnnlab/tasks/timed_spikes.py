"""Timing tasks (Gers, Schraudolph & Schmidhuber 2002, "Learning precise timing with LSTM
recurrent networks", JMLR 3: the measuring-spike-delays (MSD) and generating-timed-spikes
(GTS) tasks), selected by the field ``mode``.

Shape legend: B batch, T time (``length``), K target spikes per sequence (at most).
Inputs are float ``[B, T, 1]``: ``1.0`` at a spike, ``0.0`` elsewhere.

``mode: msd`` (measure spike delay). Two input spikes ``d`` steps apart, ``d`` uniform among the
integers ``min_interval .. max_interval``; the second spike is at the last step ``T - 1`` and
the first at ``T - 1 - d`` (so the answer is due at the second spike, as in the paper, and the
network cannot count from the start of the sequence). Target: float ``[B, 1]``, ``d`` in
steps. The model is read at the last step; its output is read as ``d / max_interval`` (a
prediction of ``out · max_interval`` steps), so targets lie in ``(0, 1]``. Loss: mean squared
error in those units, ``mean((out - d / max_interval)²)``.
Metrics: ``loss``; ``timing_error``, the mean absolute error of the predicted interval in steps;
``exact_fraction``, the fraction of sequences whose prediction rounds to the true interval
(the paper's question whether 49 and 50 steps are told apart, asked of every interval).
Baselines (predicting the mean interval ``m``, with ``n = max_interval - min_interval + 1``
equally likely intervals): ``loss = (n² - 1) / 12 / max_interval²`` (the interval's
variance); ``timing_error = E|d - m| = (n² - 1) / (4n)`` for odd ``n`` and ``n / 4`` for even
``n`` (the mean is also a median, so no constant does better); ``exact_fraction = 1/n``.
Solved: ``exact_fraction >= 0.99``.

``mode: gts`` (generate timed spikes). One input spike, the trigger, at a random step ``s``
in the first period ``0 .. period-1`` (the paper's trigger comes at ``t = 0``; the random
phase makes the sequences differ and rules out counting from the start of the sequence).
Target: float ``[B, T]``, ``1.0`` at ``s + k·period`` for ``k = 1, 2, ...`` (while ``< T``) and
``0.0`` elsewhere: a spike exactly every ``period`` steps after the trigger. The model is read
at every step (one logit per step); loss: binary cross-entropy with logits, averaged over all
steps.
Metrics: ``loss``; ``exact_fraction``, the fraction of sequences whose spikes (steps with a
positive logit) are exactly the target spikes, none missing, none extra; ``timing_error``, for
each target spike the distance in steps from the target step to the output's peak within the
period-wide window around it (``[t - period // 2, t - period // 2 + period)``), averaged.
Baselines (the best constant prediction, the mean spike rate ``r = E[K] / T ≈ 1/period``):
``loss = -r ln r - (1 - r) ln(1 - r)``; ``exact_fraction = 0`` (a constant output emits spikes
at every step or at none).
Solved: ``exact_fraction >= 0.99``.

``length`` must hold the intervals: ``length >= max_interval + 1`` (msd) and ``length >=
2·period`` (gts: every sequence holds at least one target spike). Fields of the other mode are
ignored.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, check_int, register_task, weighted_mean

SOLVED_EXACT_FRACTION = 0.99


def _spike_times(T: int) -> jax.Array:
    return jnp.arange(T, dtype=jnp.int32)[None, :]


@dataclasses.dataclass(frozen=True)
class MeasureSpikeDelay:
    """``mode: msd``; see the module docstring."""

    task: "TimedSpikesTask"
    readout = "last"

    def validate(self):
        t = self.task
        check_int("timed_spikes", "min_interval", t.min_interval, 1)
        check_int("timed_spikes", "max_interval", t.max_interval, t.min_interval, "min_interval")
        if t.length < t.max_interval + 1:
            raise ValueError(f"timed_spikes task (mode=msd): length={t.length} cannot hold two "
                             f"spikes max_interval={t.max_interval} steps apart; accepted: "
                             f"length >= max_interval + 1 = {t.max_interval + 1}")

    @property
    def num_intervals(self) -> int:
        return self.task.max_interval - self.task.min_interval + 1

    def sample(self, key, batch_size):
        t = self.task
        T = t.length
        d_B = jax.random.randint(key, (batch_size,), t.min_interval, t.max_interval + 1,
                                 jnp.int32)
        time_1xT = _spike_times(T)
        x_BxT = (time_1xT == (T - 1 - d_B)[:, None]) | (time_1xT == T - 1)
        x_BxTx1 = x_BxT.astype(jnp.float32)[:, :, None]
        y_Bx1 = d_B.astype(jnp.float32)[:, None]
        return Batch(x_BxTx1, y_Bx1, jnp.ones((batch_size,), jnp.float32))

    def predicted_steps(self, out):
        return out[:, 0].astype(jnp.float32) * float(self.task.max_interval)

    def loss(self, out, batch):
        err_B = out[:, 0].astype(jnp.float32) - batch.y[:, 0] / float(self.task.max_interval)
        return weighted_mean(err_B**2, batch.weight)

    def metrics(self, out, batch):
        pred_B = self.predicted_steps(out)
        exact_B = (jnp.round(pred_B) == batch.y[:, 0]).astype(jnp.float32)
        return {"loss": self.loss(out, batch),
                "timing_error": weighted_mean(jnp.abs(pred_B - batch.y[:, 0]), batch.weight),
                "exact_fraction": weighted_mean(exact_B, batch.weight)}

    def baselines(self):
        n = self.num_intervals
        mae = (n * n - 1) / (4 * n) if n % 2 else n / 4
        return {"loss": (n * n - 1) / 12 / self.task.max_interval**2, "timing_error": mae,
                "exact_fraction": 1.0 / n}


@dataclasses.dataclass(frozen=True)
class GenerateTimedSpikes:
    """``mode: gts``; see the module docstring."""

    task: "TimedSpikesTask"
    readout = "every"

    def validate(self):
        t = self.task
        check_int("timed_spikes", "period", t.period, 2)
        if t.length < 2 * t.period:
            raise ValueError(f"timed_spikes task (mode=gts): length={t.length} is too short for "
                             f"period={t.period}; accepted: length >= 2·period = "
                             f"{2 * t.period} (a trigger in the first period and one spike)")

    @property
    def max_spikes(self) -> int:
        return (self.task.length - 1) // self.task.period

    def sample(self, key, batch_size):
        T, n = self.task.length, self.task.period
        onset_Bx1 = jax.random.randint(key, (batch_size, 1), 0, n, jnp.int32)
        since_BxT = _spike_times(T) - onset_Bx1
        x_BxTx1 = (since_BxT == 0).astype(jnp.float32)[:, :, None]
        y_BxT = ((since_BxT > 0) & (since_BxT % n == 0)).astype(jnp.float32)
        return Batch(x_BxTx1, y_BxT, jnp.ones((batch_size, T), jnp.float32))

    def loss(self, out, batch):
        z_BxT = out[:, :, 0].astype(jnp.float32)
        bce_BxT = -(batch.y * jax.nn.log_sigmoid(z_BxT)
                    + (1.0 - batch.y) * jax.nn.log_sigmoid(-z_BxT))
        return weighted_mean(bce_BxT, batch.weight)

    def timing_error(self, z_BxT, onset_B):
        """Mean distance from each target spike to the output's peak in its window."""
        T, n = self.task.length, self.task.period
        B, K, half = z_BxT.shape[0], self.max_spikes, self.task.period // 2
        target_BxK = onset_B[:, None] + n * jnp.arange(1, K + 1, dtype=jnp.int32)[None, :]
        valid_BxK = (target_BxK <= T - 1).astype(jnp.float32)
        offsets_1x1xn = (jnp.arange(n, dtype=jnp.int32) - half)[None, None, :]
        idx_BxKxn = target_BxK[:, :, None] + offsets_1x1xn
        inside_BxKxn = idx_BxKxn <= T - 1  # windows start after the trigger, never below 0
        vals_BxKxn = jnp.take_along_axis(
            z_BxT, jnp.minimum(idx_BxKxn, T - 1).reshape(B, K * n), axis=1).reshape(B, K, n)
        vals_BxKxn = jnp.where(inside_BxKxn, vals_BxKxn, -jnp.inf)
        peak_BxK = jnp.argmax(vals_BxKxn, axis=2).astype(jnp.int32) - half
        return weighted_mean(jnp.abs(peak_BxK).astype(jnp.float32), valid_BxK)

    def metrics(self, out, batch):
        z_BxT = out[:, :, 0].astype(jnp.float32)
        target_BxT = batch.y > 0.5
        exact_B = jnp.all((z_BxT > 0) == target_BxT, axis=1).astype(jnp.float32)
        onset_B = jnp.argmax(batch.x[:, :, 0], axis=1).astype(jnp.int32)
        return {"loss": self.loss(out, batch),
                "timing_error": self.timing_error(z_BxT, onset_B),
                "exact_fraction": jnp.mean(exact_B)}

    def mean_rate(self) -> float:
        """Expected fraction of target-spike steps, over the uniform trigger phase."""
        T, n = self.task.length, self.task.period
        return sum((T - 1 - s) // n for s in range(n)) / n / T

    def baselines(self):
        r = self.mean_rate()
        return {"loss": -r * math.log(r) - (1 - r) * math.log(1 - r), "exact_fraction": 0.0}


MODES: dict[str, type] = {"msd": MeasureSpikeDelay, "gts": GenerateTimedSpikes}


@register_task("timed_spikes")
@dataclasses.dataclass(frozen=True)
class TimedSpikesTask(Task):
    """Attributes:
      mode: ``msd`` (measure spike delay) or ``gts`` (generate timed spikes).
      length: T, steps per sequence.
      min_interval: shortest spike interval (msd).
      max_interval: longest spike interval (msd); the output unit is ``1/max_interval``.
      period: steps between generated spikes (gts, >= 2).
    """

    mode: str = "msd"
    length: int = 60
    min_interval: int = 10
    max_interval: int = 50
    period: int = 10

    input_size = 1
    output_size = 1
    main_metric = "exact_fraction"  # both modes
    maximize = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"timed_spikes task: mode must be one of {sorted(MODES)}; got "
                             f"{self.mode!r}")
        check_int("timed_spikes", "length", self.length, 1)
        self.variant.validate()

    @property
    def variant(self):
        return MODES[self.mode](self)

    @property
    def readout(self) -> str:  # type: ignore[override]
        return self.variant.readout

    @property
    def sequence_length(self) -> int:
        return self.length

    def sample(self, key, batch_size):
        return self.variant.sample(key, batch_size)

    def loss(self, out, batch):
        return self.variant.loss(out, batch)

    def metrics(self, out, batch):
        return self.variant.metrics(out, batch)

    def baselines(self):
        return self.variant.baselines()

    def solved(self, metrics):
        return bool(metrics.get("exact_fraction", 0.0) >= SOLVED_EXACT_FRACTION)
