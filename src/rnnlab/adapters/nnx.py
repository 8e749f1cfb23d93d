"""rnnlab's recurrent stack as a ``flax.nnx.Module`` (see :mod:`rnnlab.adapters`).

Example::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from rnnlab.cells import GRU
    >>> from rnnlab.adapters.nnx import RecurrentStack
    >>> stack = RecurrentStack([GRU(8)], input_size=3, rngs=nnx.Rngs(0), bidirectional=True)
    >>> y_BxTxH, carries = stack(jnp.ones((2, 5, 3)))
    >>> y_BxTxH.shape
    (2, 5, 16)
"""

from collections.abc import Sequence

import jax
from flax import nnx

from rnnlab import adapters
from rnnlab.cells.base import Cell


class RecurrentStack(nnx.Module):
    """Stacked (optionally bidirectional) rnnlab recurrent layers as an NNX module.

    Args:
      cells: one :class:`~rnnlab.cells.base.Cell` per layer.
      input_size: D, the input features.
      rngs: ``nnx.Rngs`` with a ``params`` stream (the params equal the linen stack's
        ``init`` with the same key).
      **options: the linen :class:`~rnnlab.recurrent.RecurrentStack`'s options.

    Attributes:
      params: ``nnx.Param`` holding the linen params tree ``{"layer_0": {"cell": ...}}``.
    """

    def __init__(self, cells: Sequence[Cell], input_size: int, *, rngs: nnx.Rngs, **options):
        self.stack = adapters.make_stack(cells, **options)
        self.params = nnx.Param(adapters.init_params(self.stack, rngs.params(), input_size))

    def __call__(self, x_BxTxD: jax.Array, seq_lengths_B=None, *, probes=None,
                 dropout_key=None):
        """``(y_BxTxH', final_carries)``, as the linen stack's ``apply``."""
        return adapters.apply_stack(self.stack, self.params.get_value(), x_BxTxD, seq_lengths_B,
                                    probes=probes, dropout_key=dropout_key)

    def probe_zeros(self, x_BxTxD: jax.Array, seq_lengths_B=None):
        """Zero gradient probes for these input shapes (pass them as ``probes``)."""
        return adapters.probe_zeros(self.stack, self.params.get_value(), x_BxTxD, seq_lengths_B)
