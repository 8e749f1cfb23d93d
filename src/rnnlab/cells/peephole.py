"""Peephole LSTM (Gers, Schraudolph & Schmidhuber 2002; TensorFlow's ``use_peepholes``).

Diagonal peephole weights let the gates see the cell state: the input and forget gates see
:math:`c_{t-1}`, the output gate sees the new :math:`c_t`.

.. math::

   i_t &= \\sigma(W_i x_t + U_i h_{t-1} + p_i \\odot c_{t-1} + b_i) \\\\
   f_t &= \\sigma(W_f x_t + U_f h_{t-1} + p_f \\odot c_{t-1} + b_f) \\\\
   c_t &= f_t \\odot c_{t-1} + i_t \\odot \\phi(W_g x_t + U_g h_{t-1} + b_g) \\\\
   o_t &= \\sigma(W_o x_t + U_o h_{t-1} + p_o \\odot c_t + b_o) \\\\
   h_t &= o_t \\odot \\phi(c_t)

Parameter layout: the LSTM's (``kernel [D, 4H]``, ``recurrent_kernel [H, 4H]``, ``bias [4H]``,
gate order ``i, f, g, o``) plus ``peephole [3, H]`` with rows ``p_i, p_f, p_o``, initialised with
``peephole_init`` (Glorot-uniform over the ``[3, H]`` matrix). Count: ``4(H·D + H² + H) + 3H``.

Example::

    >>> import jax
    >>> from rnnlab.cells import PeepholeLSTM
    >>> PeepholeLSTM(hidden_size=50).param_count(1) - 4 * (50 + 2500 + 50)
    150
"""

import dataclasses

import jax

from rnnlab.cells.base import LSTMCarry, Params, activation, initializer
from rnnlab.cells.lstm import LSTM
from rnnlab.cells.registry import register_cell


@register_cell("peephole")
@dataclasses.dataclass(frozen=True)
class PeepholeLSTM(LSTM):
    """LSTM with diagonal peephole connections; see the module docstring."""

    peephole_init: str = "glorot_uniform"

    def __post_init__(self):
        super().__post_init__()
        initializer(self.peephole_init, "cell.peephole_init")

    def init(self, key: jax.Array, input_size: int) -> Params:
        k_lstm, k_peep = jax.random.split(key)
        params = super().init(k_lstm, input_size)
        params["peephole"] = initializer(self.peephole_init)(
            k_peep, (3, self.hidden_size), params["kernel"].dtype)
        return params

    def probed_step(self, params: Params, carry: LSTMCarry, xp_BxG: jax.Array, probe):
        """The step; a ``probe`` is added to ``c_t`` before the output gate and ``h_t`` read
        it, and to ``h_t`` (see :meth:`Cell.probed_step`)."""
        act = activation(self.activation)
        sig = activation(self.recurrent_activation)
        p_i, p_f, p_o = params["peephole"].astype(xp_BxG.dtype)[:, None, :]  # each [1, H]
        i, f, g, o = self.gate_preactivations(params, carry, xp_BxG)
        c_BxH = sig(f + p_f * carry.c) * carry.c + sig(i + p_i * carry.c) * act(g)
        if probe is not None:
            c_BxH = c_BxH + probe.c
        h_BxH = sig(o + p_o * c_BxH) * act(c_BxH)
        if probe is not None:
            h_BxH = h_BxH + probe.h
        return LSTMCarry(h_BxH, c_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        return super().param_count(input_size) + 3 * self.hidden_size
