"""Multi-query associative recall, MQAR (Arora et al. 2023, "Zoology: measuring and improving
recall in efficient language models", section 3).

Shape legend: B batch, T time (``length``), P key-value pairs (``num_pairs``), Q queries
(``num_queries``), R = T - 2P the query region, V value vocabulary (``value_vocab_size``).

Alphabet (token ids): keys ``0 .. key_vocab_size-1``, values ``key_vocab_size ..
key_vocab_size+V-1``, padding ``key_vocab_size + V``.

Input: int ``[B, T]``. First the context ``k1 v1 k2 v2 ... kP vP``: ``P`` distinct keys drawn
uniformly from the key vocabulary, each followed by its value, drawn uniformly (independently,
with repetition) from the value vocabulary. Then the query region of ``R`` steps: ``Q`` of the
context's keys (distinct, chosen uniformly, in random order) at ``Q`` distinct positions chosen
uniformly and kept in increasing order; padding everywhere else.
Target: int ``[B, T]``; at each query step the queried key's value as a value index ``0 ..
V-1`` (its token id minus ``key_vocab_size``); elsewhere ``0`` with weight 0. The model is read
at every step; loss and accuracy count the query steps only.

Differences from Zoology's generator, on purpose: the answer is due at the query step itself
(a recurrent model read at every step, not next-token prediction, so the key is not followed
by a slot for its value); the non-query steps are a padding token rather than random tokens
(which could repeat a key); query positions are uniform rather than power-law distributed;
values are drawn with repetition, so the chance baseline below is exact. With ``num_queries =
num_pairs`` every key is queried once, as in Zoology.

Metrics: ``loss`` (cross-entropy in nats per query), ``accuracy`` (queries answered).

Baselines: a model without memory of the context guesses uniformly among the values:
``loss = ln V``, ``accuracy = 1/V``.

Solved: query ``accuracy >= 0.99``.
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
    random_subsets,
    register_task,
    sorted_random_positions,
)

SOLVED_ACCURACY = 0.99


@register_task("associative_recall")
@dataclasses.dataclass(frozen=True)
class AssociativeRecallTask(Task):
    """Attributes:
      length: T, steps per sequence (>= 2·num_pairs + num_queries).
      num_pairs: P, key-value pairs in the context (<= key_vocab_size).
      num_queries: Q, queries after the context (<= num_pairs).
      key_vocab_size: keys to draw the distinct context keys from.
      value_vocab_size: V, values to draw from.
    """

    length: int = 64
    num_pairs: int = 8
    num_queries: int = 8
    key_vocab_size: int = 16
    value_vocab_size: int = 16

    readout = "every"
    main_metric = "accuracy"
    maximize = True

    def __post_init__(self):
        for name in ("length", "num_pairs", "num_queries", "key_vocab_size",
                     "value_vocab_size"):
            check_int("associative_recall", name, getattr(self, name),
                      2 if name == "value_vocab_size" else 1)  # one value: nothing to recall
        if self.num_pairs > self.key_vocab_size:
            raise ValueError(f"associative_recall task: num_pairs={self.num_pairs} distinct keys "
                             f"cannot come from key_vocab_size={self.key_vocab_size} keys; "
                             f"accepted: num_pairs <= key_vocab_size")
        if self.num_queries > self.num_pairs:
            raise ValueError(f"associative_recall task: num_queries={self.num_queries} exceeds "
                             f"num_pairs={self.num_pairs} (each key is queried at most once); "
                             f"accepted: num_queries <= num_pairs")
        if 2 * self.num_pairs + self.num_queries > self.length:
            raise ValueError(f"associative_recall task: num_pairs={self.num_pairs} pairs and "
                             f"num_queries={self.num_queries} queries do not fit in "
                             f"length={self.length}; accepted: 2·num_pairs + num_queries <= "
                             f"length")

    @property
    def pad_token(self) -> int:
        return self.key_vocab_size + self.value_vocab_size

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.key_vocab_size + self.value_vocab_size + 1

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self.value_vocab_size

    @property
    def sequence_length(self) -> int:
        return self.length

    def sample(self, key, batch_size):
        B, P, Q = batch_size, self.num_pairs, self.num_queries
        R = self.length - 2 * P
        k_keys, k_values, k_which, k_positions = jax.random.split(key, 4)
        keys_BxP = random_subsets(k_keys, B, self.key_vocab_size, P)  # distinct, random order
        values_BxP = jax.random.randint(k_values, (B, P), 0, self.value_vocab_size, jnp.int32)
        context_Bx2P = jnp.stack([keys_BxP, self.key_vocab_size + values_BxP],
                                 axis=2).reshape(B, 2 * P)
        which_BxQ = random_subsets(k_which, B, P, Q)  # the queried pairs, in query order
        queried_BxQ = jnp.take_along_axis(keys_BxP, which_BxQ, axis=1)
        answers_BxQ = jnp.take_along_axis(values_BxP, which_BxQ, axis=1)
        pos_BxQ = sorted_random_positions(k_positions, B, R, Q)
        rows_Bx1 = jnp.arange(B, dtype=jnp.int32)[:, None]
        region_BxR = jnp.full((B, R), self.pad_token, jnp.int32).at[rows_Bx1, pos_BxQ].set(
            queried_BxQ)
        y_region_BxR = jnp.zeros((B, R), jnp.int32).at[rows_Bx1, pos_BxQ].set(answers_BxQ)
        w_region_BxR = jnp.zeros((B, R), jnp.float32).at[rows_Bx1, pos_BxQ].set(1.0)
        x_BxT = jnp.concatenate([context_Bx2P, region_BxR], axis=1)
        y_BxT = jnp.concatenate([jnp.zeros((B, 2 * P), jnp.int32), y_region_BxR], axis=1)
        weight_BxT = jnp.concatenate([jnp.zeros((B, 2 * P), jnp.float32), w_region_BxR], axis=1)
        return Batch(x_BxT, y_BxT, weight_BxT)

    def loss(self, out, batch):
        return cross_entropy(out, batch.y, batch.weight)

    def metrics(self, out, batch):
        return {"loss": self.loss(out, batch), "accuracy": accuracy(out, batch.y, batch.weight)}

    def baselines(self):
        return {"loss": math.log(self.value_vocab_size), "accuracy": 1.0 / self.value_vocab_size}

    def solved(self, metrics):
        return bool(metrics.get("accuracy", 0.0) >= SOLVED_ACCURACY)
