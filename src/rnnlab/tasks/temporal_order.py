"""The temporal order problem (Hochreiter & Schmidhuber 1997, "Long short-term memory",
experiments 6a and 6b).

Shape legend: B batch, T time (``length``), N relevant symbols (``num_relevant``), C classes.

Alphabet (token ids): distractors ``0 .. num_distractors-1`` (the paper's a, b, c, d), the
relevant symbols ``X = num_distractors`` and ``Y = num_distractors + 1``, the start marker
``E = num_distractors + 2`` and the end (trigger) marker ``B = num_distractors + 3``.

Input: int ``[B, T]``: ``E`` at step 0, ``B`` at step ``T - 1``, distractors drawn uniformly
everywhere else except at ``N`` positions, each uniform within its own window, that hold ``X``
or ``Y`` (equally likely, independently). The paper's windows for its lengths of 100-110 are
``t1 ∈ [10, 20], t2 ∈ [50, 60]`` (6a, ``N = 2``) and ``t1 ∈ [10, 20], t2 ∈ [33, 43],
t3 ∈ [66, 76]`` (6b, ``N = 3``); here they scale with ``T``: window ``[p·T // 100, q·T // 100]``
for the paper's ``[p, q]`` (both ends inclusive, 0-based steps), which is the paper's window
for ``T = 100``. Unlike the paper, the length is fixed (``T``) rather than drawn from
``[100, 110]``.

Target: int ``[B]``, the class of the order of the relevant symbols, read as a binary number
with ``X = 0``, ``Y = 1`` and the first symbol the most significant bit: for 6a ``XX → 0 (Q),
XY → 1 (R), YX → 2 (S), YY → 3 (U)``; 6b has 8 classes the same way. The model is read at the
last step (after the trigger); the loss is the cross-entropy.

Metrics: ``loss`` (nats per sequence), ``accuracy``.

Baselines: chance, ``accuracy = 1/C`` and ``loss = ln C`` with ``C = 2^N`` (classes are
equally likely and independent of every memoryless feature of the input).

Solved: ``accuracy >= 0.99`` on the evaluation batch. (The paper stops training once the 2000
most recent training sequences were all classified correctly; 0.99 is the criterion shared by
this package's classification tasks.)
"""

import dataclasses
import itertools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, accuracy, cross_entropy, register_task

SOLVED_ACCURACY = 0.99


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register_task("temporal_order")
@dataclasses.dataclass(frozen=True)
class TemporalOrderTask(Task):
    """Attributes:
      length: T, steps per sequence, start and end markers included.
      num_relevant: N, relevant symbols per sequence: 2 (experiment 6a, 4 classes) or 3
        (experiment 6b, 8 classes).
      num_distractors: distractor symbols (the paper's a, b, c, d: 4).
    """

    length: int = 100
    num_relevant: int = 2
    num_distractors: int = 4

    readout = "last"
    main_metric = "accuracy"
    maximize = True
    # the paper's windows in percent of the length, per num_relevant
    WINDOWS_PERCENT: ClassVar[dict[int, tuple[tuple[int, int], ...]]] = {
        2: ((10, 20), (50, 60)),
        3: ((10, 20), (33, 43), (66, 76)),
    }

    def __post_init__(self):
        if not _is_int(self.num_relevant) or self.num_relevant not in self.WINDOWS_PERCENT:
            raise ValueError(f"temporal_order task: num_relevant must be one of "
                             f"{sorted(self.WINDOWS_PERCENT)} (experiments 6a, 6b); got "
                             f"{self.num_relevant!r}")
        if not _is_int(self.num_distractors) or self.num_distractors < 1:
            raise ValueError(f"temporal_order task: num_distractors must be an int >= 1; got "
                             f"{self.num_distractors!r}")
        if not _is_int(self.length) or not self._fits(self.length):
            shortest = next(T for T in range(3, 10_000) if self._fits(T))
            raise ValueError(
                f"temporal_order task: length={self.length!r} is too short for "
                f"num_relevant={self.num_relevant}: the windows {self.windows_for(self.length)} "
                f"must be non-empty, disjoint and inside the steps 1..length-2 (between the "
                f"markers); accepted: length >= {shortest}")

    def windows_for(self, length) -> tuple[tuple[int, int], ...] | None:
        """The inclusive ``(first, last)`` step window of each relevant symbol."""
        if not _is_int(length):
            return None
        return tuple((p * length // 100, q * length // 100)
                     for p, q in self.WINDOWS_PERCENT[self.num_relevant])

    def _fits(self, length: int) -> bool:
        windows = self.windows_for(length)
        inside = windows[0][0] >= 1 and windows[-1][1] <= length - 2
        ordered = all(lo <= hi for lo, hi in windows) and all(
            a[1] < b[0] for a, b in itertools.pairwise(windows))
        return inside and ordered

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        return self.windows_for(self.length)

    @property
    def symbol_x(self) -> int:
        return self.num_distractors

    @property
    def start_token(self) -> int:
        return self.num_distractors + 2

    @property
    def end_token(self) -> int:
        return self.num_distractors + 3

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.num_distractors + 4

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return 2**self.num_relevant

    @property
    def sequence_length(self) -> int:
        return self.length

    def sample(self, key, batch_size):
        B, T, N = batch_size, self.length, self.num_relevant
        k_noise, k_bits, *k_positions = jax.random.split(key, 2 + N)
        x_BxT = jax.random.randint(k_noise, (B, T), 0, self.num_distractors, jnp.int32)
        x_BxT = x_BxT.at[:, 0].set(self.start_token).at[:, T - 1].set(self.end_token)
        # one position per window; a loop over the (2 or 3) windows, not over the batch
        pos_BxN = jnp.stack([jax.random.randint(k, (B,), lo, hi + 1, jnp.int32)
                             for k, (lo, hi) in zip(k_positions, self.windows, strict=True)],
                            axis=1)
        bits_BxN = jax.random.randint(k_bits, (B, N), 0, 2, jnp.int32)  # X = 0, Y = 1
        rows_Bx1 = jnp.arange(B, dtype=jnp.int32)[:, None]
        x_BxT = x_BxT.at[rows_Bx1, pos_BxN].set(self.symbol_x + bits_BxN)
        place_1xN = (2 ** jnp.arange(N - 1, -1, -1, dtype=jnp.int32))[None, :]
        y_B = jnp.sum(bits_BxN * place_1xN, axis=1)
        return Batch(x_BxT, y_B, jnp.ones((B,), jnp.float32))

    def loss(self, out, batch):
        return cross_entropy(out, batch.y, batch.weight)

    def metrics(self, out, batch):
        return {"loss": self.loss(out, batch), "accuracy": accuracy(out, batch.y, batch.weight)}

    def baselines(self):
        return {"loss": math.log(self.output_size), "accuracy": 1.0 / self.output_size}

    def solved(self, metrics):
        return bool(metrics.get("accuracy", 0.0) >= SOLVED_ACCURACY)
