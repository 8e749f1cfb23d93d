"""Sequence models built from recurrent layers.

Shape legend: B batch, T time, D input features, V vocabulary, H hidden, O outputs.

Inputs are real-valued ``x_BxTxD`` or integer tokens ``x_BxT`` (one-hot encoded, so the
parameters are the cells' and the head's alone). The stacked recurrent layers feed a head that
reads every step (``readout="every"``, outputs ``[B, T, O]``) or the last valid step
(``readout="last"``, outputs ``[B, O]``: the final hidden state of the last layer; with a
bidirectional stack, the forward state after the last valid step merged with the backward
state after the first, as Keras' ``Bidirectional(return_sequences=False)``).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, activation, dense_initializers
from rnnlab.recurrent import Dropout, RecurrentStack, merge_directions

READOUTS = ("every", "last")


class SequenceModel(nn.Module):
    """Input encoding, stacked recurrent layers, dropout, dense head.

    Attributes:
      cells: one cell per recurrent layer.
      output_size: O, width of the final dense layer.
      vocab_size: V for token inputs (one-hot), ``None`` for real-valued inputs.
      readout: ``every`` or ``last``.
      head_sizes: widths of dense layers between the recurrent stack and the output layer.
      head_activation: their activation.
      dropout: rate between recurrent layers and before the head (Keras' stacked
        ``LSTM, Dropout`` pattern).
      parallel: run the recurrent layers in the cells' parallel mode (``model.parallel``).
      bptt: ``auto``, ``fused`` or ``autodiff`` backpropagation through time (``model.bptt``;
        see :class:`~rnnlab.recurrent.Recurrent`).
      init_preset: how the head's dense layers are initialised, as the cells' preset
        (``cell.init_preset``: ``rnnlab``/``flax`` LeCun-normal, ``keras`` Glorot-uniform,
        ``pytorch`` U(±1/√fan_in) on kernel and bias).
    """

    cells: Sequence[Cell]
    output_size: int
    vocab_size: int | None = None
    readout: str = "every"
    head_sizes: Sequence[int] = ()
    head_activation: str = "relu"
    dropout: float = 0.0
    bidirectional: bool = False
    merge: str = "concat"
    unroll: int | None = None
    remat: bool = False
    learn_initial_carry: bool = False
    projection: str = "auto"
    parallel: bool = False
    bptt: str = "auto"
    init_preset: str = "rnnlab"

    @nn.compact
    def __call__(self, x, seq_lengths_B=None, *, deterministic: bool = True,
                 dropout_rate=None):
        """Outputs ``[B, T, O]`` (``readout="every"``) or ``[B, O]`` (``last``) for inputs ``x``
        (``[B, T, D]`` floats, or ``[B, T]`` ints with ``vocab_size``). ``dropout_rate`` (a
        scalar, may be traced: a packed member's own) replaces :attr:`dropout` where dropout
        applies (``dropout > 0``)."""
        if self.readout not in READOUTS:
            raise ValueError(f"readout={self.readout!r} is not accepted; use one of {READOUTS}")
        if self.vocab_size is not None:
            if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
                raise ValueError(f"token inputs must be int [B, T]; got {x.dtype}{x.shape}")
            x_BxTxD = jax.nn.one_hot(x, self.vocab_size, dtype=jnp.float32)
        else:
            if x.ndim != 3:
                raise ValueError(f"real-valued inputs must be [B, T, D]; got shape {x.shape}")
            x_BxTxD = x.astype(jnp.float32)
        stack = RecurrentStack(self.cells, bidirectional=self.bidirectional, merge=self.merge,
                               dropout=self.dropout, unroll=self.unroll, remat=self.remat,
                               learn_initial_carry=self.learn_initial_carry,
                               projection=self.projection, parallel=self.parallel,
                               bptt=self.bptt, name="recurrent")
        y_BxTxH, carries = stack(x_BxTxD, seq_lengths_B, deterministic=deterministic,
                                 dropout_rate=dropout_rate)
        if self.readout == "last":
            last = carries[-1]
            feat = (merge_directions(last[0].h, last[1].h, self.merge) if self.bidirectional
                    else last.h)
        else:
            feat = y_BxTxH
        if self.dropout > 0:
            feat = Dropout(self.dropout)(feat, deterministic=deterministic, rate=dropout_rate)
        act = activation(self.head_activation, "head_activation")
        for i, width in enumerate(self.head_sizes):
            feat = act(self._dense(width, feat, f"head_{i}")(feat))
        return self._dense(self.output_size, feat, "output")(feat)

    def _dense(self, width: int, feat, name: str) -> nn.Dense:
        """A head layer initialised as ``init_preset``'s framework initialises its dense
        layer (:func:`rnnlab.cells.base.dense_initializers`)."""
        kernel_init, bias_init = dense_initializers(self.init_preset, int(feat.shape[-1]))
        return nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init, name=name)


def count_params(params) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
