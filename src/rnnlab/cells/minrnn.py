"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
Needed?", arXiv:2410.01201, Sections 3.1.3 and 3.2.3): gates that read only the input, so the
recurrence is linear in ``h`` and a whole sequence can be computed with a parallel prefix scan.

minGRU (gate order ``z, h``):

.. math::

   z_t = \\sigma(W_z x_t + b_z), \\quad \\tilde h_t = W_h x_t + b_h, \\quad
   h_t = (1 - z_t) \\odot h_{t-1} + z_t \\odot \\tilde h_t

minLSTM (gate order ``f, i, h``), with the paper's length-independent normalisation:

.. math::

   f_t = \\sigma(W_f x_t + b_f), \\quad i_t = \\sigma(W_i x_t + b_i), \\quad
   \\tilde h_t = W_h x_t + b_h \\\\
   f'_t = \\frac{f_t}{f_t + i_t}, \\quad i'_t = \\frac{i_t}{f_t + i_t}, \\quad
   h_t = f'_t \\odot h_{t-1} + i'_t \\odot \\tilde h_t

Both are :math:`h_t = a_t \\odot h_{t-1} + b_t` with :math:`a_t, b_t` functions of
:math:`x_t` alone. ``step`` runs one step in the shared scan driver (sequential mode);
``scan_parallel`` computes all steps at once with ``jax.lax.associative_scan`` over the pairs
:math:`(a_t, b_t)` under :math:`(a, b) \\circ (a', b') = (a a', a' b + b')` (Blelloch 1990;
the paper's Appendix uses the same scan in log space, Heinsen 2023). Same outputs and
gradients, ``O(log T)`` depth instead of ``T`` (the test checks both modes to 1e-5).

Parameter layout: ``kernel [D, G]``, ``bias [G]`` (no recurrent kernel; ``recurrent_init`` is
unused). Counts: minGRU ``2(H·D + H)``, minLSTM ``3(H·D + H)``. The paper's log-space
variant (``g(x) = x + 0.5`` for ``x >= 0``, else ``sigmoid(x)``, keeping ``h`` positive) is not
used: the plain form above is the paper's eq. for the sequential and parallel modes alike.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab.cells import MinGRU
    >>> cell = MinGRU(hidden_size=4)
    >>> params = cell.init(jax.random.key(0), input_size=3)
    >>> xp_BxTxG = cell.project(params, jnp.ones((2, 6, 3)))
    >>> y_BxTxH, final = cell.scan_parallel(params, xp_BxTxG, cell.initial_carry(params, 2))
    >>> y_BxTxH.shape, cell.param_count(3)
    ((2, 6, 4), 32)
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, HiddenCarry, Params, dtype_of
from rnnlab.cells.registry import register_cell


def linear_recurrence(a_BxTxH: jax.Array, b_BxTxH: jax.Array, h0_BxH: jax.Array, *,
                      reverse: bool = False) -> jax.Array:
    """All ``h_t = a_t * h_{t-1} + b_t`` (``h_{-1} = h0``) at once, ``[B, T, H]``, with
    ``jax.lax.associative_scan``; ``reverse`` runs from the last step to the first (outputs
    stay aligned with the inputs)."""
    if reverse:
        a_BxTxH, b_BxTxH = jnp.flip(a_BxTxH, 1), jnp.flip(b_BxTxH, 1)

    def combine(earlier, later):
        a1, b1 = earlier
        a2, b2 = later
        return a1 * a2, a2 * b1 + b2

    A_BxTxH, B_BxTxH = jax.lax.associative_scan(combine, (a_BxTxH, b_BxTxH), axis=1)
    h_BxTxH = A_BxTxH * h0_BxH[:, None, :] + B_BxTxH
    return jnp.flip(h_BxTxH, 1) if reverse else h_BxTxH


@dataclasses.dataclass(frozen=True)
class _MinRNN(Cell):
    """The shared part of minGRU and minLSTM: ``h' = a(x) h + b(x)``."""

    carry_type = HiddenCarry

    def init(self, key: jax.Array, input_size: int) -> Params:
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int; got {input_size!r}")
        k_in, k_b = jax.random.split(key)
        pdt = dtype_of(self.param_dtype)
        return {
            "kernel": self.kernel_initializer()(k_in, (input_size, self.gate_size), pdt),
            "bias": self.bias_initializer()(k_b, (self.gate_size,), pdt),
        }

    def coefficients(self, xp):
        """``(a, b)`` of ``h' = a h + b`` from the projection ``xp [..., G]``."""
        raise NotImplementedError

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        a_BxH, b_BxH = self.coefficients(xp_BxG)
        h_BxH = a_BxH * carry.h + b_BxH
        return HiddenCarry(h_BxH), h_BxH

    def scan_parallel(self, params: Params, xp_BxTxG: jax.Array, carry: HiddenCarry,
                      seq_lengths_B=None, *, reverse: bool = False, probe=None):
        """The whole sequence at once: ``(y_BxTxH, final_carry)``, as the scan driver gives
        with ``step`` (same masking, direction and gradient probe).

        Args:
          params: the cell's parameters (unused: the gates read only ``xp``).
          xp_BxTxG: ``project``'s output for all steps.
          carry: initial ``HiddenCarry(h [B, H])``.
          seq_lengths_B: optional int ``[B]`` in ``[0, T]``; padded steps keep the carry
            and emit zeros, and their values (even NaN) never enter a computation.
          reverse: run from the last valid step to the first.
          probe: optional ``HiddenCarry(h [T, B, H])`` of zeros, added to ``h_t`` (the
            gradient probe; it enters as part of ``b_t``), ignored on padded steps.

        Raises:
          ValueError: ``T == 0`` or bad ``seq_lengths_B`` (as the scan driver)."""
        from rnnlab.recurrent import check_seq_lengths  # the driver's own check

        B, T = xp_BxTxG.shape[:2]
        if T == 0:
            raise ValueError(f"the input has no time steps (T=0, shape {xp_BxTxG.shape})")
        seq_lengths_B = check_seq_lengths(seq_lengths_B, T, B)
        mask_BxTx1 = None
        if seq_lengths_B is not None:
            mask_BxTx1 = (jnp.arange(T)[None, :] < seq_lengths_B[:, None])[:, :, None]
            xp_BxTxG = jnp.where(mask_BxTx1, xp_BxTxG, jnp.zeros((), xp_BxTxG.dtype))
        a_BxTxH, b_BxTxH = self.coefficients(xp_BxTxG)
        if probe is not None:
            b_BxTxH = b_BxTxH + jnp.swapaxes(probe.h, 0, 1)
        if mask_BxTx1 is not None:
            a_BxTxH = jnp.where(mask_BxTx1, a_BxTxH, jnp.ones((), a_BxTxH.dtype))
            b_BxTxH = jnp.where(mask_BxTx1, b_BxTxH, jnp.zeros((), b_BxTxH.dtype))
        h_BxTxH = linear_recurrence(a_BxTxH, b_BxTxH, carry.h, reverse=reverse)
        final = HiddenCarry(h_BxTxH[:, 0] if reverse else h_BxTxH[:, -1])
        if mask_BxTx1 is not None:
            h_BxTxH = jnp.where(mask_BxTx1, h_BxTxH, jnp.zeros((), h_BxTxH.dtype))
        return h_BxTxH, final


@register_cell("mingru")
@dataclasses.dataclass(frozen=True)
class MinGRU(_MinRNN):
    """minGRU (Feng et al. 2024, Section 3.1.3); see the module docstring."""

    gates = ("z", "h")

    def coefficients(self, xp):
        x_z, candidate = jnp.split(xp, 2, axis=-1)
        z = jax.nn.sigmoid(x_z)
        return 1.0 - z, z * candidate

    def param_count(self, input_size: int) -> int:
        return 2 * self.hidden_size * (input_size + 1)


@register_cell("minlstm")
@dataclasses.dataclass(frozen=True)
class MinLSTM(_MinRNN):
    """minLSTM (Feng et al. 2024, Section 3.2.3); see the module docstring."""

    gates = ("f", "i", "h")

    def coefficients(self, xp):
        x_f, x_i, candidate = jnp.split(xp, 3, axis=-1)
        f, i = jax.nn.sigmoid(x_f), jax.nn.sigmoid(x_i)
        total = f + i
        return f / total, (i / total) * candidate

    def param_count(self, input_size: int) -> int:
        return 3 * self.hidden_size * (input_size + 1)
