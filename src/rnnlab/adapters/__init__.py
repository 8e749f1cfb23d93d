"""rnnlab's recurrent stack inside other JAX libraries' modules.

Shape legend: B batch, T time, D input features, H hidden units.

The cells are pure functions over a params dict, and :class:`~rnnlab.recurrent.RecurrentStack`
is a Flax linen module whose ``apply`` is a pure function of ``(params, x)``. The adapters
hold those params as the other library's parameters and call that same ``apply``, so any
registered cell (plugins included), masking (``seq_lengths``), bidirectional layers, dropout
and the gradient probe work unchanged, with the linen path's numbers:

* :class:`rnnlab.adapters.nnx.RecurrentStack`: a ``flax.nnx.Module`` (Flax's current API; the
  params are one ``nnx.Param`` holding the linen params tree).
* :class:`rnnlab.adapters.equinox.RecurrentStack`: an ``equinox.Module`` (params a pytree
  field, the linen module a static field); needs the ``equinox`` extra
  (``pip install "rnnlab[equinox]"``).

Both take ``(cells, input_size, ...)`` plus the linen stack's options, and are called as
``stack(x_BxTxD, seq_lengths_B=None, *, probes=None, dropout_key=None)`` returning
``(y_BxTxH', final_carries)`` as the linen stack does. ``probes`` (from ``stack.probe_zeros(x)``)
switches the gradient probe on: differentiate the loss with respect to it to get
``dL/d carry_t`` for every layer, as :mod:`rnnlab.gradients` does. ``dropout_key`` turns
dropout between layers on (training); without it the stack is deterministic.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell
from rnnlab.recurrent import PROBES, RecurrentStack


def make_stack(cells: Sequence[Cell], **options) -> RecurrentStack:
    """The linen stack the adapters wrap; ``options`` are its attributes (``bidirectional``,
    ``merge``, ``dropout``, ``unroll``, ``remat``, ``learn_initial_carry``, ``projection``,
    ``bptt``).

    Raises:
      TypeError: a cell that is not a :class:`~rnnlab.cells.base.Cell`, or an unknown option."""
    cells = tuple(cells)
    for i, cell in enumerate(cells):
        if not isinstance(cell, Cell):
            raise TypeError(f"cells[{i}] must be a rnnlab Cell; got {type(cell).__name__}")
    accepted = {"bidirectional", "merge", "dropout", "unroll", "remat", "learn_initial_carry",
                "projection", "bptt"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"unknown RecurrentStack option(s) {unknown}; accepted: {sorted(accepted)}")
    return RecurrentStack(cells, **options)


def init_params(stack: RecurrentStack, key: jax.Array, input_size: int) -> dict:
    """The linen stack's params for ``input_size`` features (what ``stack.init`` gives)."""
    if not isinstance(input_size, int) or input_size <= 0:
        raise ValueError(f"input_size must be a positive int; got {input_size!r}")
    return stack.init(key, jnp.zeros((1, 1, input_size), jnp.float32))["params"]


def apply_stack(stack: RecurrentStack, params, x_BxTxD, seq_lengths_B=None, *, probes=None,
                dropout_key=None):
    """``stack.apply`` with the params, the optional probes and the optional dropout key."""
    variables: dict[str, Any] = {"params": params}
    if probes is not None:
        variables[PROBES] = probes
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    return stack.apply(variables, x_BxTxD, seq_lengths_B, deterministic=dropout_key is None,
                       rngs=rngs)


def probe_zeros(stack: RecurrentStack, params, x_BxTxD, seq_lengths_B=None):
    """Zero probes for every layer at ``x``'s shapes (from shapes alone)."""
    def shapes():
        _, variables = stack.apply({"params": params}, x_BxTxD, seq_lengths_B,
                                   mutable=[PROBES])
        return variables[PROBES]

    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(shapes))
