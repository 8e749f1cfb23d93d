"""Long short-term memory (Hochreiter & Schmidhuber 1997) with the forget gate of
Gers, Schmidhuber & Cummins (2000), and the variant space of Greff et al. (2017).

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

Variants (``variant``; Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2017, "LSTM: A
Search Space Odyssey", IEEE TNNLS 28(10), Section III): each changes exactly one part.

=========  ==================================================  ===========================
variant    change                                              parameters
=========  ==================================================  ===========================
vanilla    none                                                as above
nig        no input gate: :math:`i_t = 1`                      the ``i`` block is dropped
nfg        no forget gate: :math:`f_t = 1`                     the ``f`` block is dropped
nog        no output gate: :math:`o_t = 1`                     the ``o`` block is dropped
niaf       no input activation: :math:`g_t = W_g x + U_g h + b_g`  unchanged
noaf       no output activation: :math:`h_t = o_t \\odot c_t`   unchanged
cifg       coupled input and forget gate: :math:`f_t = 1 - i_t`  the ``f`` block is dropped
fgr        full gate recurrence: each gate also reads the       ``+ 9H²``
           previous activations of all three gates,
           :math:`+ R_{i\\to\\cdot} i_{t-1} + R_{f\\to\\cdot} f_{t-1} + R_{o\\to\\cdot} o_{t-1}`
=========  ==================================================  ===========================

Greff et al.'s vanilla LSTM has peepholes: it is :class:`~rnnlab.cells.peephole.PeepholeLSTM`
here, and their "no peepholes" (NP) variant is this class. A dropped gate keeps the order of
the others (``nig``: ``f, g, o``; ``cifg``: ``i, g, o``) and takes its peephole with it. With
``cifg`` the input-gate bias starts at ``-forget_bias``, so that :math:`f_t = 1 - i_t` starts
where the forget gate would. ``fgr`` adds ``gate_recurrent_kernel [3H, 3H]`` (rows: previous
``i, f, o``; column blocks: their contributions to ``i, f, o``; each ``[3H, H]`` column block
initialised with ``recurrent_init``) and keeps the previous gate activations in its carry,
:class:`FGRCarry` ``(h, c, i, f, o)``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab.cells import LSTM
    >>> cell = LSTM(hidden_size=8)
    >>> params = cell.init(jax.random.key(0), input_size=3)
    >>> xp_BxTxG = cell.project(params, jnp.zeros((2, 5, 3)))
    >>> carry, h_BxH = cell.step(params, cell.initial_carry(params, 2), xp_BxTxG[:, 0])
    >>> h_BxH.shape, cell.param_count(3) == 4 * (8 * 3 + 8 * 8 + 8)
    ((2, 8), True)
    >>> LSTM(hidden_size=8, variant="cifg").gates
    ('i', 'g', 'o')
"""

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, LSTMCarry, Params, activation
from rnnlab.cells.registry import register_cell


class FGRCarry(NamedTuple):
    """Carry of the full-gate-recurrence LSTM: ``h``, ``c`` and the previous gate
    activations ``i``, ``f``, ``o``, each ``[B, H]``."""

    h: jax.Array
    c: jax.Array
    i: jax.Array
    f: jax.Array
    o: jax.Array


# variant -> the gate blocks it keeps (in the order i, f, g, o)
VARIANT_GATES = {
    "vanilla": ("i", "f", "g", "o"),
    "nig": ("f", "g", "o"),
    "nfg": ("i", "g", "o"),
    "nog": ("i", "f", "g"),
    "niaf": ("i", "f", "g", "o"),
    "noaf": ("i", "f", "g", "o"),
    "cifg": ("i", "g", "o"),
    "fgr": ("i", "f", "g", "o"),
}
VARIANTS = tuple(VARIANT_GATES)


@register_cell("lstm")
@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
    """LSTM cell; see the module docstring for equations, variants and layout.

    Attributes:
      forget_bias: initial value of the forget-gate bias (``cifg``: minus the input gate's).
      activation: cell input and output nonlinearity (``tanh``; ``relu`` as in Keras).
      recurrent_activation: gate nonlinearity (``sigmoid``).
      variant: one of :data:`VARIANTS` (Greff et al. 2017).
    """

    forget_bias: float = 1.0
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    variant: str = "vanilla"

    has_peepholes: ClassVar[bool] = False
    update_reads_sum = True  # z = xp + hr
    torch_two_biases = True

    @property
    def initial_forget_bias(self) -> float:
        """The forget-gate bias ``init`` adds: ``forget_bias`` (rnnlab), 1 (keras'
        ``unit_forget_bias``), 0 (pytorch, flax)."""
        return {"rnnlab": self.forget_bias, "keras": 1.0}.get(self.init_preset, 0.0)

    def __post_init__(self):
        super().__post_init__()
        if (isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, int | float)
                or not math.isfinite(self.forget_bias)):
            raise ValueError(f"cell.forget_bias must be a finite number; got "
                             f"{self.forget_bias!r}")
        if self.variant not in VARIANT_GATES:
            raise ValueError(f"cell.variant={self.variant!r} is not an LSTM variant; accepted: "
                             f"{list(VARIANTS)} (Greff et al. 2017)")

    @property
    def gates(self) -> tuple[str, ...]:  # type: ignore[override]
        return VARIANT_GATES[self.variant]

    @property
    def carry_type(self) -> type:  # type: ignore[override]
        return FGRCarry if self.variant == "fgr" else LSTMCarry

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        """The gates with a peephole (rows of ``peephole``), in the order i, f, o."""
        if not self.has_peepholes:
            return ()
        return tuple(g for g in ("i", "f", "o") if g in self.gates)

    def init(self, key: jax.Array, input_size: int) -> Params:
        k_dense, k_fgr = jax.random.split(key)
        params = self._dense_params(k_dense, input_size)
        H = self.hidden_size
        if "f" in self.gates:
            at = self.gates.index("f") * H
            params["bias"] = params["bias"].at[at:at + H].add(self.initial_forget_bias)
        elif self.variant == "cifg":  # f = 1 - sigmoid(b_i) = sigmoid(-b_i) = sigmoid(forget_bias)
            params["bias"] = params["bias"].at[:H].add(-self.initial_forget_bias)
        if self.variant == "fgr":
            params["gate_recurrent_kernel"] = self.recurrent_kernel(
                k_fgr, 3 * H, 3, params["kernel"].dtype)
        return params

    def update(self, params: Params, carry, xp_BxG: jax.Array, hr_BxG: jax.Array,
               probe=None):
        """The step after the recurrent product ``hr_BxG = h_{t-1} U`` (see
        :meth:`Cell.update`); a ``probe`` is added to ``c_t`` before the output gate and
        ``h_t`` read it, to ``h_t``, and (``fgr``) to each gate activation before it is used
        (see :meth:`Cell.probed_step`)."""
        act = activation(self.activation)
        sig = activation(self.recurrent_activation)
        dt = xp_BxG.dtype
        z = dict(zip(self.gates, jnp.split(xp_BxG + hr_BxG, len(self.gates), axis=-1),
                     strict=True))
        peep = {}
        if self.has_peepholes:
            rows = params["peephole"].astype(dt)[:, None, :]  # each [1, H]
            peep = dict(zip(self.peephole_gates, rows, strict=True))
        if self.variant == "fgr":
            H = self.hidden_size
            prev_Bx3H = jnp.concatenate([carry.i, carry.f, carry.o], axis=-1)
            r_BxG = self.matmul(prev_Bx3H, params["gate_recurrent_kernel"])
            for k, g in enumerate(("i", "f", "o")):
                z[g] = z[g] + r_BxG[:, k * H:(k + 1) * H]

        def with_probe(value, field):
            return value if probe is None else value + getattr(probe, field)

        c_prev = carry.c
        i = sig(z["i"] + peep["i"] * c_prev) if "i" in peep else (
            sig(z["i"]) if "i" in z else 1.0)
        if self.variant == "cifg":
            f = 1.0 - i
        elif "f" in z:
            f = sig(z["f"] + peep["f"] * c_prev) if "f" in peep else sig(z["f"])
        else:
            f = 1.0
        if self.variant == "fgr":
            i, f = with_probe(i, "i"), with_probe(f, "f")
        g = z["g"] if self.variant == "niaf" else act(z["g"])
        c_BxH = with_probe(f * c_prev + i * g, "c")
        if "o" in z:
            o = sig(z["o"] + peep["o"] * c_BxH) if "o" in peep else sig(z["o"])
        else:
            o = 1.0
        h_BxH = o * (c_BxH if self.variant == "noaf" else act(c_BxH))
        h_BxH = with_probe(h_BxH, "h")
        if self.variant == "fgr":
            o = with_probe(o, "o")
            return FGRCarry(h_BxH, c_BxH, i, f, o), h_BxH
        return LSTMCarry(h_BxH, c_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        H, n = self.hidden_size, len(self.gates)
        count = n * (H * input_size + H * H + H) + len(self.peephole_gates) * H
        return count + (9 * H * H if self.variant == "fgr" else 0)


@register_cell("cifg")
@dataclasses.dataclass(frozen=True)
class CIFG(LSTM):
    """The coupled input-forget gate LSTM, :math:`f_t = 1 - i_t` (Greff et al. 2017's CIFG;
    the coupling of the GRU's update gate, Cho et al. 2014), as a cell of its own: ``LSTM``
    with ``variant="cifg"`` (no peepholes). Layout ``kernel [D, 3H]``, ``recurrent_kernel
    [H, 3H]``, ``bias [3H]``, gate order ``i, g, o``; the input-gate bias starts at
    ``-forget_bias``. Count: ``3(H·D + H² + H)``.

    Example::

        >>> CIFG(hidden_size=10).param_count(1)
        360
    """

    variant: str = "cifg"

    def __post_init__(self):
        super().__post_init__()
        if self.variant != "cifg":
            raise ValueError(f"cell.variant must be 'cifg' for the cifg cell; got "
                             f"{self.variant!r} (use cell=lstm or cell=peephole for others)")
