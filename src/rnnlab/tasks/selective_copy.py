"""The selective copying task (Gu & Dao 2023, "Mamba: linear-time sequence modeling with
selective state spaces", section 3.1 and appendix E.1; the generator follows the ``variable``
copying data of the S4/Mamba code: tokens scattered at sorted random positions, then markers).

Shape legend: B batch, T prefix length (``length``), K tokens to memorise (``num_tokens``),
L = T + K the whole sequence, S symbols (``num_symbols``).

Alphabet (token ids): symbols ``0 .. S-1``, noise (blank) ``S``, recall marker ``S + 1``.

Input: int ``[B, L]``. A prefix of ``T`` steps holds ``K`` symbols drawn uniformly (with
repetition) at ``K`` distinct positions chosen uniformly and kept in increasing order; every
other prefix step is noise. Then ``K`` recall markers: the first is the delimiter that starts
the recall, each one asks for the next symbol.
Target: int ``[B, L]``; at the ``K`` recall steps, the prefix's symbols in order (their token
ids, which are also the output classes ``0 .. S-1``); elsewhere ``0`` with weight 0.
The model is read at every step. As in Mamba's setup the loss is computed on the output
tokens only: ``weight`` is 1 on the recall steps and 0 on the prefix, so the model is never
asked to predict noise.

Metrics: ``loss`` (cross-entropy in nats per recall step), ``accuracy`` (recall steps).

Baselines: a memoryless model can only guess uniformly among the symbols: ``loss = ln S``,
``accuracy = 1/S``.

Solved: recall ``accuracy >= 0.99``.

Mamba's experiment: ``T = 4096``, ``K = 16``, vocabulary 16 (``S = 14`` with noise and marker).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import (
    Batch,
    Task,
    accuracy,
    check_int,
    cross_entropy,
    register_task,
    sorted_random_positions,
)

SOLVED_ACCURACY = 0.99


@register_task("selective_copy")
@dataclasses.dataclass(frozen=True)
class SelectiveCopyTask(Task):
    """Attributes:
      length: T, steps of the prefix that holds the tokens among noise (>= num_tokens).
      num_tokens: K, symbols to memorise and recall.
      num_symbols: S, alphabet size without noise and marker.
    """

    length: int = 100
    num_tokens: int = 10
    num_symbols: int = 8

    readout = "every"
    main_metric = "accuracy"
    maximize = True

    def __post_init__(self):
        check_int("selective_copy", "length", self.length, 1)
        check_int("selective_copy", "num_tokens", self.num_tokens, 1)
        check_int("selective_copy", "num_symbols", self.num_symbols, 2)  # 1: nothing to recall
        if self.num_tokens > self.length:
            raise ValueError(f"selective_copy task: num_tokens={self.num_tokens} does not fit "
                             f"in a prefix of length={self.length}; accepted: num_tokens <= "
                             f"length")

    @property
    def noise_token(self) -> int:
        return self.num_symbols

    @property
    def marker_token(self) -> int:
        return self.num_symbols + 1

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.num_symbols + 2

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self.num_symbols  # noise and marker are never targets

    @property
    def sequence_length(self) -> int:
        return self.length + self.num_tokens

    def sample(self, key, batch_size):
        B, T, K = batch_size, self.length, self.num_tokens
        k_symbols, k_positions = jax.random.split(key)
        symbols_BxK = jax.random.randint(k_symbols, (B, K), 0, self.num_symbols, jnp.int32)
        pos_BxK = sorted_random_positions(k_positions, B, T, K)
        rows_Bx1 = jnp.arange(B, dtype=jnp.int32)[:, None]
        prefix_BxT = jnp.full((B, T), self.noise_token, jnp.int32).at[rows_Bx1, pos_BxK].set(
            symbols_BxK)
        markers_BxK = jnp.full((B, K), self.marker_token, jnp.int32)
        x_BxL = jnp.concatenate([prefix_BxT, markers_BxK], axis=1)
        y_BxL = jnp.concatenate([jnp.zeros((B, T), jnp.int32), symbols_BxK], axis=1)
        weight_BxL = jnp.concatenate([jnp.zeros((B, T), jnp.float32),
                                      jnp.ones((B, K), jnp.float32)], axis=1)
        return Batch(x_BxL, y_BxL, weight_BxL)

    def loss(self, out, batch):
        return cross_entropy(out, batch.y, batch.weight)

    def metrics(self, out, batch):
        return {"loss": self.loss(out, batch), "accuracy": accuracy(out, batch.y, batch.weight)}

    def baselines(self):
        return {"loss": math.log(self.num_symbols), "accuracy": 1.0 / self.num_symbols}

    def solved(self, metrics):
        return bool(metrics.get("accuracy", 0.0) >= SOLVED_ACCURACY)
