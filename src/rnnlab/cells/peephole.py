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
With a ``variant`` that drops a gate, the gate's peephole row goes with it (``nig``: rows
``p_f, p_o``; ``nog``: ``p_i, p_f``; ``nfg`` and ``cifg``: ``p_i, p_o``).

Example::

    >>> import jax
    >>> from rnnlab.cells import PeepholeLSTM
    >>> PeepholeLSTM(hidden_size=50).param_count(1) - 4 * (50 + 2500 + 50)
    150
"""

import dataclasses

import jax

from rnnlab.cells.base import Params, initializer, torch_uniform
from rnnlab.cells.lstm import LSTM
from rnnlab.cells.registry import register_cell


@register_cell("peephole")
@dataclasses.dataclass(frozen=True)
class PeepholeLSTM(LSTM):
    """LSTM with diagonal peephole connections; see the module docstring. The step is
    :meth:`LSTM.update` (the probe on ``c_t`` acts before the output gate's peephole and
    ``h_t`` read it); every ``variant`` of the LSTM applies (Greff et al. 2017's vanilla LSTM
    is ``variant="vanilla"`` here)."""

    peephole_init: str = "glorot_uniform"

    has_peepholes = True

    def __post_init__(self):
        super().__post_init__()
        initializer(self.peephole_init, "cell.peephole_init")

    def init(self, key: jax.Array, input_size: int) -> Params:
        k_lstm, k_peep = jax.random.split(key)
        params = super().init(k_lstm, input_size)
        shape, dtype = (len(self.peephole_gates), self.hidden_size), params["kernel"].dtype
        if self.init_preset == "pytorch":
            params["peephole"] = torch_uniform(self.hidden_size)(k_peep, shape, dtype)
        elif self.init_preset == "keras":
            # TF's PeepholeLSTMCell: glorot_uniform on each [H] vector, whose fan_in and fan_out
            # Keras both take as H: U(-sqrt(3/H), sqrt(3/H))
            bound = (3.0 / self.hidden_size) ** 0.5
            params["peephole"] = jax.random.uniform(k_peep, shape, dtype, -bound, bound)
        else:  # rnnlab, and flax (which has no peephole cell)
            params["peephole"] = initializer(self.peephole_init)(k_peep, shape, dtype)
        return params
