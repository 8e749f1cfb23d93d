"""The copy task (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs", section 4.1).

Alphabet: blank ``0``, symbols ``1..num_symbols`` (8), delimiter ``num_symbols + 1`` (9).
``T`` is the task's ``length`` field (Arjovsky et al.'s T, the delay), as every recall task's
``length`` is its paper's T. Input (``T + 2·copy_length`` steps): ``copy_length`` (10) random
symbols, ``T - 1`` blanks,
the delimiter, ``copy_length`` blanks. Target: ``T + copy_length`` blanks, then the symbols.
The model is read at every step; the loss is the cross-entropy averaged over all steps.

Metrics: ``loss`` (nats per step), ``accuracy`` (recalled symbols predicted correctly, the
last ``copy_length`` steps only).

Baselines: a memoryless strategy that outputs blanks until the delimiter and then guesses
uniformly among the symbols has cross-entropy ``copy_length·ln(num_symbols) / (T +
2·copy_length)`` (``10 ln 8 / (T + 20)``) and recall accuracy ``1/num_symbols`` (12.5%).

Solved: recall accuracy ≥ 0.99 (and, equivalently, a loss far below the baseline).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, accuracy, check_int, cross_entropy, register_task


@register_task("copy")
@dataclasses.dataclass(frozen=True)
class CopyTask(Task):
    """Attributes:
      length: T, the delay: steps from the last symbol to the delimiter, plus one.
      copy_length: number of symbols to remember (10).
      num_symbols: alphabet size without blank and delimiter (8).
    """

    length: int = 5
    copy_length: int = 10
    num_symbols: int = 8

    readout = "every"
    main_metric = "accuracy"
    maximize = True

    def __post_init__(self):
        for name in ("length", "copy_length"):
            check_int("copy", name, getattr(self, name), 1)
        check_int("copy", "num_symbols", self.num_symbols, 2)  # one symbol: nothing to recall

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.num_symbols + 2

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self.num_symbols + 1  # blank + symbols; the delimiter is never a target

    @property
    def sequence_length(self) -> int:
        return self.length + 2 * self.copy_length

    def sample(self, key, batch_size):
        K, T = self.copy_length, self.length
        symbols_BxK = jax.random.randint(key, (batch_size, K), 1, self.num_symbols + 1)
        blanks = jnp.zeros((batch_size, T - 1), jnp.int32)
        delim = jnp.full((batch_size, 1), self.num_symbols + 1, jnp.int32)
        tail = jnp.zeros((batch_size, K), jnp.int32)
        x_BxL = jnp.concatenate([symbols_BxK, blanks, delim, tail], axis=1)
        y_BxL = jnp.concatenate([jnp.zeros((batch_size, T + K), jnp.int32), symbols_BxK], 1)
        weight_BxL = jnp.ones(y_BxL.shape, jnp.float32)
        return Batch(x_BxL, y_BxL, weight_BxL)

    def loss(self, out, batch):
        return cross_entropy(out, batch.y, batch.weight)

    def metrics(self, out, batch):
        recall = jnp.zeros(batch.y.shape, jnp.float32).at[:, -self.copy_length:].set(1.0)
        return {"loss": self.loss(out, batch),
                "accuracy": accuracy(out, batch.y, recall * batch.weight)}

    def baselines(self):
        return {"loss": self.copy_length * math.log(self.num_symbols) / self.sequence_length,
                "accuracy": 1.0 / self.num_symbols}

    def solved(self, metrics):
        return metrics.get("accuracy", 0.0) >= 0.99
