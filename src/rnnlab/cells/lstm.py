"""Long short-term memory (Hochreiter & Schmidhuber 1997) with the forget gate of
Gers, Schmidhuber & Cummins (2000).

.. math::

   i_t &= \\sigma(W_i x_t + U_i h_{t-1} + b_i) \\\\
   f_t &= \\sigma(W_f x_t + U_f h_{t-1} + b_f) \\\\
   g_t &= \\phi(W_g x_t + U_g h_{t-1} + b_g) \\\\
   o_t &= \\sigma(W_o x_t + U_o h_{t-1} + b_o) \\\\
   c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t \\\\
   h_t &= o_t \\odot \\phi(c_t)

with :math:`\\phi` = ``activation`` (tanh by default; Keras' ``LSTM(activation="relu")``
replaces both tanh) and :math:`\\sigma` = ``recurrent_activation``.

Parameter layout (Keras' layout; gate order ``i, f, g, o`` as in Keras and PyTorch):
``kernel [D, 4H]``, ``recurrent_kernel [H, 4H]``, ``bias [4H]``; the forget-gate slice of the
bias starts at ``forget_bias`` (1.0, Jozefowicz et al. 2015). Count: ``4(H·D + H² + H)``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab.cells import LSTM
    >>> cell = LSTM(hidden_size=8)
    >>> params = cell.init(jax.random.key(0), input_size=3)
    >>> xp_BxTxG = cell.project(params, jnp.zeros((2, 5, 3)))
    >>> carry, h_BxH = cell.step(params, cell.initial_carry(params, 2), xp_BxTxG[:, 0])
    >>> h_BxH.shape, cell.param_count(3) == 4 * (8 * 3 + 8 * 8 + 8)
    ((2, 8), True)
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, LSTMCarry, Params, activation
from rnnlab.cells.registry import register_cell


@register_cell("lstm")
@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
    """LSTM cell; see the module docstring for equations and layout.

    Attributes:
      forget_bias: initial value of the forget-gate bias.
      activation: cell input and output nonlinearity (``tanh``; ``relu`` as in Keras).
      recurrent_activation: gate nonlinearity (``sigmoid``).
    """

    forget_bias: float = 1.0
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    gates = ("i", "f", "g", "o")
    carry_type = LSTMCarry

    def __post_init__(self):
        super().__post_init__()
        activation(self.activation, "cell.activation")
        activation(self.recurrent_activation, "cell.recurrent_activation")
        if (isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, int | float)
                or not math.isfinite(self.forget_bias)):
            raise ValueError(f"cell.forget_bias must be a finite number; got "
                             f"{self.forget_bias!r}")

    def init(self, key: jax.Array, input_size: int) -> Params:
        params = self._dense_params(key, input_size)
        H = self.hidden_size
        params["bias"] = params["bias"].at[H:2 * H].add(self.forget_bias)
        return params

    def gate_preactivations(self, params: Params, carry: LSTMCarry, xp_BxG: jax.Array):
        """``(i, f, g, o)`` pre-activations, each ``[B, H]``."""
        z_BxG = xp_BxG + carry.h @ params["recurrent_kernel"].astype(xp_BxG.dtype)
        return jnp.split(z_BxG, 4, axis=-1)

    def step(self, params: Params, carry: LSTMCarry, xp_BxG: jax.Array):
        return self.probed_step(params, carry, xp_BxG, None)

    def probed_step(self, params: Params, carry: LSTMCarry, xp_BxG: jax.Array, probe):
        """The step; a ``probe`` is added to ``c_t`` before ``h_t`` reads it, and to ``h_t``
        (see :meth:`Cell.probed_step`)."""
        act = activation(self.activation)
        sig = activation(self.recurrent_activation)
        i, f, g, o = self.gate_preactivations(params, carry, xp_BxG)
        c_BxH = sig(f) * carry.c + sig(i) * act(g)
        if probe is not None:
            c_BxH = c_BxH + probe.c
        h_BxH = sig(o) * act(c_BxH)
        if probe is not None:
            h_BxH = h_BxH + probe.h
        return LSTMCarry(h_BxH, c_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H = self.hidden_size
        return 4 * (H * input_size + H * H + H)
