"""The only place that runs over time.

Shape legend: B batch, T time, D input features, H hidden units, G gate pre-activations.

``scan_driver`` runs a cell's pure ``step`` with ``jax.lax.scan`` over the input projection
``xp_BxTxG`` that the cell computed for all steps outside the loop; ``loop_driver`` is a plain
Python loop with the same signature, kept as the reference the tests check the scan against.
The :class:`Recurrent` Flax module owns a cell's parameters and calls the scan driver;
:class:`RecurrentStack` composes layers (stacking, bidirectional, dropout between layers).

Sequence lengths: steps ``t >= seq_lengths[b]`` are padding; they leave the carry unchanged and
emit zeros, so a padded batch gives the same outputs and final carries as the unpadded
sequences, in both directions (a reversed scan first passes the padding, keeping the initial
carry, then runs the valid steps from last to first).

Gradient probe: when the ``probes`` collection is passed (see :mod:`rnnlab.gradients`), a zero
tensor ``eps_t`` is added to the carry after every step. The gradient of the loss with respect
to ``eps_t`` is the total derivative ``dL/d carry_t`` (``dL/dh_t``, and ``dL/dc_t`` for the LSTM
family), computed in the same backward pass as the parameter gradients. Padded steps ignore
their ``eps_t``, so it gets zero gradient. Without the collection nothing is added.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells.base import Cell, dtype_of

PROBES = "probes"  # the Flax collection holding the gradient probes
PROBE_NAME = "carry"
MERGES = ("concat", "sum")

StepFn = Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]


def check_seq_lengths(seq_lengths_B, T: int, B: int) -> jax.Array | None:
    """Validates per-example lengths: an int array of shape ``[B]`` with values in ``[0, T]``.

    The values are checked whenever they are concrete (outside ``jit``, or passed as a
    constant); inside a traced program only the dtype and shape can be checked.

    Raises:
      ValueError: wrong shape, values out of range; ``TypeError``: not integers."""
    if seq_lengths_B is None:
        return None
    if not isinstance(seq_lengths_B, jax.core.Tracer):
        concrete = np.asarray(seq_lengths_B)
        if concrete.size and np.issubdtype(concrete.dtype, np.integer) and (
                concrete.min() < 0 or concrete.max() > T):
            raise ValueError(f"seq_lengths must lie in [0, T={T}]; got values from "
                             f"{concrete.min()} to {concrete.max()}")
    seq_lengths_B = jnp.asarray(seq_lengths_B)
    if not jnp.issubdtype(seq_lengths_B.dtype, jnp.integer):
        raise TypeError(f"seq_lengths must be integers (lengths in steps); got dtype "
                        f"{seq_lengths_B.dtype}")
    if seq_lengths_B.shape != (B,):
        raise ValueError(f"seq_lengths must have shape [B]=({B},); got {seq_lengths_B.shape}")
    return seq_lengths_B


def _mask_TxB(seq_lengths_B: jax.Array | None, T: int, B: int) -> jax.Array | None:
    seq_lengths_B = check_seq_lengths(seq_lengths_B, T, B)
    if seq_lengths_B is None:
        return None
    return jnp.arange(T)[:, None] < seq_lengths_B[None, :]


def zero_padding(x_BxTxF: jax.Array, mask_TxB: jax.Array | None) -> jax.Array:
    """``x`` with its padded steps set to 0 (``mask_TxB`` False), so that a NaN, inf or huge
    value in the padding never enters a computation. Discarding a non-finite result later
    with ``jnp.where`` is not enough: its backward pass multiplies the discarded value's
    derivative by zero, and ``0 * NaN`` is NaN in every parameter gradient."""
    if mask_TxB is None:
        return x_BxTxF
    return jnp.where(jnp.swapaxes(mask_TxB, 0, 1)[:, :, None], x_BxTxF,
                     jnp.zeros((), x_BxTxF.dtype))


def _masked_step(step: StepFn, params, carry, xp_BxG, mask_B, eps, probed_step=None):
    if eps is None:
        new_carry, h_BxH = step(params, carry, xp_BxG)
    elif probed_step is not None:
        new_carry, h_BxH = probed_step(params, carry, xp_BxG, eps)
    else:
        new_carry, h_BxH = step(params, carry, xp_BxG)
        new_carry = jax.tree.map(jnp.add, new_carry, eps)
        h_BxH = h_BxH + eps.h
    if mask_B is not None:
        keep = mask_B[:, None]
        new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
        h_BxH = jnp.where(keep, h_BxH, jnp.zeros_like(h_BxH))
    return new_carry, h_BxH


def scan_driver(step: StepFn, params, xp_BxTxG: jax.Array, carry, seq_lengths_B=None, *,
                reverse: bool = False, unroll: int = 1, remat: bool = False, probe=None,
                project_step=None, probed_step=None):
    """Runs ``step`` over time with ``jax.lax.scan``.

    Args:
      step: a cell's pure step ``(params, carry, xp_BxG) -> (carry, h_BxH)``.
      params: the cell's parameters.
      xp_BxTxG: the input projection for all steps; with ``project_step``, the raw inputs
        ``x_BxTxD`` instead.
      project_step: optional ``(params, x_BxD) -> xp_BxG``, applied inside the scan (see
        :class:`Recurrent`'s ``projection``).
      carry: initial carry, a NamedTuple of ``[B, H]`` arrays with an ``h`` field.
      seq_lengths_B: optional int ``[B]`` valid lengths in ``[0, T]``; later steps are
        padding, and may hold any value (NaN, inf): they are zeroed before use.
      reverse: run from the last step to the first (outputs stay aligned with inputs).
      unroll: steps unrolled per scan iteration.
      remat: recompute each step in the backward pass instead of storing its activations.
      probe: optional carry-shaped tree of ``[T, B, H]`` zeros (the gradient probe).
      probed_step: optional ``(params, carry, xp_BxG, eps) -> (carry, h_BxH)`` that adds the
        probe where the cell produces each carry field (:meth:`Cell.probed_step`); without
        it the probe is added after ``step``.

    Returns:
      ``(y_BxTxH, final_carry)``.

    Raises:
      ValueError: ``T == 0``, or ``seq_lengths_B`` of the wrong shape or out of range.
    """
    B, T = xp_BxTxG.shape[:2]
    if T == 0:
        raise ValueError(f"the input has no time steps (T=0, shape {xp_BxTxG.shape})")
    mask_TxB = _mask_TxB(seq_lengths_B, T, B)
    xp_BxTxG = zero_padding(xp_BxTxG, mask_TxB)

    def body(c, inputs):
        xp_BxG, mask_B, eps = inputs
        if project_step is not None:
            xp_BxG = project_step(params, xp_BxG)
        return _masked_step(step, params, c, xp_BxG, mask_B, eps, probed_step)

    if remat:
        body = jax.checkpoint(body)
    xs = (jnp.swapaxes(xp_BxTxG, 0, 1), mask_TxB, probe)
    carry, y_TxBxH = jax.lax.scan(body, carry, xs, reverse=reverse, unroll=unroll)
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


# Parameters whose products the fused driver owns; a cell's ``update`` never reads them.
DRIVER_OWNED = ("kernel", "bias", "recurrent_kernel")
BPTT_MODES = ("auto", "fused", "autodiff")


def _update_step(cell: Cell, hr_BxG):
    """``step`` and ``probed_step`` of ``_masked_step`` for a given recurrent product."""
    return (lambda p, c, xp: cell.update(p, c, xp, hr_BxG),
            lambda p, c, xp, eps: cell.update(p, c, xp, hr_BxG, eps))


def _masked_update(cell: Cell, pointwise, carry, xp_BxG, hr_BxG, mask_B, eps):
    step, probed = _update_step(cell, hr_BxG)
    return _masked_step(step, pointwise, carry, xp_BxG, mask_B, eps, probed)


def _pointwise(params) -> dict:
    return {k: v for k, v in params.items() if k not in DRIVER_OWNED}


def _products(cell: Cell, xp_BxG, hr_BxG):
    """What the backward loop feeds the update for one step: ``(xp, hr)``, or ``(xp + hr,
    None)`` for a cell with ``update_reads_sum`` (one array to keep instead of two)."""
    return (xp_BxG + hr_BxG, None) if cell.update_reads_sum else (xp_BxG, hr_BxG)


def _update_vjp(cell, pointwise, c_prev, xp_BxG, hr_BxG, mask_B, eps):
    """The VJP of the masked update at one step (``jax.vjp``; no hand-written derivative),
    giving ``(d_pointwise, d_carry, d_xp, d_hr, d_eps)``. With ``hr_BxG=None``, ``xp_BxG``
    holds the sum ``xp + hr`` (``update_reads_sum``) and ``d_xp`` is None: it equals
    ``d_hr``."""
    if hr_BxG is None:
        def update_of_sum(p, c, z, e):
            return _masked_update(cell, p, c, z, jnp.zeros((), z.dtype), mask_B, e)

        _, vjp = jax.vjp(update_of_sum, pointwise, c_prev, xp_BxG, eps)

        def vjp_of_sum(ct):
            d_p, d_c, d_z, d_e = vjp(ct)
            return d_p, d_c, None, d_z, d_e

        return vjp_of_sum

    def update(p, c, xp, hr, e):
        return _masked_update(cell, p, c, xp, hr, mask_B, e)

    return jax.vjp(update, pointwise, c_prev, xp_BxG, hr_BxG, eps)[1]


def _affine_projection(cell: Cell, params) -> bool:
    """Whether ``cell.project_step`` is the base class's ``x W + b`` (``kernel``, ``bias``)."""
    return (type(cell).project_step is Cell.project_step and "kernel" in params
            and "bias" in params)


def _weight_gradients(cell: Cell, h_prev_TxBxH, xs_TxBxD, dhr_TxBxG, dxp_TxBxG, params):
    """``dU = Σ_t h_{t-1}ᵀ dhr_t`` and, with ``xs_TxBxD`` (the in-scan ``x W + b``
    projection, whose gradient is ``dxp``), ``dW = Σ_t x_tᵀ dxp_t`` and ``db = Σ_t 1ᵀ dxp_t``:
    each one ``[K, T·B] x [T·B, G]`` product, and one product for all three when ``dxp`` and
    ``dhr`` are the same array (:attr:`~rnnlab.cells.base.Cell.update_reads_sum`), its rows
    ``[h_{t-1}, x_t, 1]`` (the counterpart of the forward's ``[x_t, h_{t-1}] [W; U]``, one
    pass over the ``[T·B, G]`` gradients instead of three). On XLA:CPU the rows
    are transposed once first (an optimisation barrier keeps the copy): a ``[K, N] x [N, G]``
    product runs in the YNNPACK matmul, the transposed-operand form it would otherwise fold
    into falls back to a slower kernel (docs/benchmarks.md)."""
    T, B, H = h_prev_TxBxH.shape
    dt = h_prev_TxBxH.dtype

    def rows_product(parts, d_TxBxG):
        rows_NxK = jnp.concatenate([p.reshape(T * B, -1).astype(dt) for p in parts], axis=1)
        rows_KxN = rows_NxK.T
        if jax.default_backend() == "cpu":
            rows_KxN = jax.lax.optimization_barrier(rows_KxN)
        return cell.matmul(rows_KxN, d_TxBxG.reshape(T * B, -1))

    x_rows = () if xs_TxBxD is None else (xs_TxBxD, jnp.ones((T, B, 1), dt))  # x_t, 1
    if x_rows and dxp_TxBxG is dhr_TxBxG:
        prod = rows_product((h_prev_TxBxH, *x_rows), dhr_TxBxG)
        dU, dWb = prod[:H], prod[H:]
    else:
        dU = rows_product((h_prev_TxBxH,), dhr_TxBxG)
        dWb = rows_product(x_rows, dxp_TxBxG) if x_rows else None
    out = {"recurrent_kernel": dU.astype(params["recurrent_kernel"].dtype)}
    if dWb is not None:
        out["kernel"] = dWb[:-1].astype(params["kernel"].dtype)
        out["bias"] = dWb[-1].astype(params["bias"].dtype)
    return out


def _merged_kernel(cell: Cell, params, project_step) -> jax.Array | None:
    """``[W; U]`` (``[D + H, G]``) when one product ``[x_t, h_{t-1}] [W; U] + b`` gives what
    the update reads: the in-scan ``x W + b`` projection, the plain ``h U`` recurrent product
    and an update that reads only their sum (:attr:`~rnnlab.cells.base.Cell.update_reads_sum`:
    the LSTM family, the tanh RNN). One matmul per step instead of two: one dispatch fewer in
    the loop, and a larger product (measured 0.945x the step at D = 32 on XLA:CPU, no change
    at D = 2: docs/benchmarks.md). None otherwise."""
    if (project_step is None or not cell.update_reads_sum
            or not _affine_projection(cell, params)
            or type(cell).recurrent_product is not Cell.recurrent_product):
        return None
    return jnp.concatenate([params["kernel"], params["recurrent_kernel"]], axis=0)


def _step_products(cell: Cell, params, carry, x_t, project_step, WU):
    """``(xp_t, hr_t)`` of one step: the input projection (or ``x_t`` when it is hoisted) and
    the recurrent product; with ``WU`` (:func:`_merged_kernel`), ``(xp_t + hr_t, 0)`` from one
    product."""
    if WU is not None:
        dt = dtype_of(cell.dtype)
        z_BxG = cell.matmul(jnp.concatenate([x_t.astype(dt), carry.h.astype(dt)], axis=-1), WU)
        z_BxG = z_BxG + params["bias"].astype(dt)[None, :]
        return z_BxG, jnp.zeros((), z_BxG.dtype)
    xp_BxG = x_t if project_step is None else project_step(params, x_t)
    return xp_BxG, cell.recurrent_product(params, carry, xp_BxG)


def _fused_loop(cell, reverse, unroll, remat, project_step, params, xs_TxB, carry, mask_TxB,
                probe, keep: bool):
    """The forward loop; ``keep``: also stack the backward loop's residuals per step, the
    previous carry and (without remat) the products (:func:`_products`). The update's own
    activations are not kept: the backward loop recomputes them (a smaller working set than
    autodiff's, which stores them: docs/benchmarks.md)."""
    pointwise = _pointwise(params)
    WU = _merged_kernel(cell, params, project_step)

    def body(c, inputs):
        x_t, mask_B, eps = inputs
        xp_BxG, hr_BxG = _step_products(cell, params, c, x_t, project_step, WU)
        new_c, h_BxH = _masked_update(cell, pointwise, c, xp_BxG, hr_BxG, mask_B, eps)
        if not keep:
            return new_c, h_BxH
        return new_c, (h_BxH, (c,) if remat else (c, *_products(cell, xp_BxG, hr_BxG)))

    return jax.lax.scan(body, carry, (xs_TxB, mask_TxB, probe), reverse=reverse, unroll=unroll)


def _fused_forward(cell, reverse, unroll, remat, project_step, params, xs_TxB, carry, mask_TxB,
                   probe):
    final, (y_TxBxH, saved) = _fused_loop(cell, reverse, unroll, remat, project_step, params,
                                          xs_TxB, carry, mask_TxB, probe, keep=True)
    return (y_TxBxH, final), (params, xs_TxB, mask_TxB, probe, saved)


def _fused_backward(cell, reverse, unroll, remat, project_step, residuals, cotangents):
    params, xs_TxB, mask_TxB, probe, saved = residuals
    dy_TxBxH, dfinal = cotangents
    U_HxG = params["recurrent_kernel"]
    pointwise = _pointwise(params)
    WU = _merged_kernel(cell, params, project_step) if remat else None

    def step_vjp(dcarry, dy_BxH, c_prev, products, mask_B, eps):
        update_vjp = _update_vjp(cell, pointwise, c_prev, *products, mask_B, eps)
        d_p, d_c, d_xp, d_hr, d_eps = update_vjp((dcarry, dy_BxH))
        # the only sequential matmul of the backward pass: dL/dh_{t-1} += dhr_t Uᵀ
        d_c = d_c._replace(h=d_c.h + cell.matmul(d_hr, U_HxG.T).astype(d_c.h.dtype))
        return d_c, d_p, d_xp, d_hr, d_eps

    zeros = jax.tree.map(jnp.zeros_like, pointwise)
    if remat:  # recompute the products; their gradients leave the loop as its outputs
        def body(acc, inputs):
            dcarry, dpointwise = acc
            x_t, mask_B, eps, dy_BxH, (c_prev,) = inputs
            products = _products(cell, *_step_products(cell, params, c_prev, x_t, project_step,
                                                       WU))
            d_c, d_p, d_xp, d_hr, d_eps = step_vjp(dcarry, dy_BxH, c_prev, products, mask_B,
                                                    eps)
            return (d_c, jax.tree.map(jnp.add, dpointwise, d_p)), (d_xp, d_hr, d_eps)

        (dcarry0, dpointwise), (dxp_TxBxG, dhr_TxBxG, dprobe) = jax.lax.scan(
            body, (dfinal, zeros), (xs_TxB, mask_TxB, probe, dy_TxBxH, saved),
            reverse=not reverse, unroll=unroll)
    else:
        # Step t's gradients of the products overwrite step t's saved products, which the
        # loop has just read and never reads again: the loop carries the [T, B, G] arrays the
        # forward loop filled instead of stacking outputs of its own, which XLA:CPU would
        # allocate and fill with zeros first (the training step in 0.67-0.94x the time for the
        # LSTM, 0.68x for the GRU: docs/benchmarks.md).
        def body(acc, inputs):
            dcarry, dpointwise, stacks = acc
            t, mask_B, eps, dy_BxH, c_prev = inputs
            products = tuple(None if a is None else
                             jax.lax.dynamic_index_in_dim(a, t, keepdims=False) for a in stacks)
            d_c, d_p, d_xp, d_hr, d_eps = step_vjp(dcarry, dy_BxH, c_prev, products, mask_B,
                                                    eps)
            grads = (d_hr, None) if stacks[1] is None else (d_xp, d_hr)
            stacks = tuple(None if a is None else
                           jax.lax.dynamic_update_index_in_dim(a, g.astype(a.dtype), t, 0)
                           for a, g in zip(stacks, grads, strict=True))
            return (d_c, jax.tree.map(jnp.add, dpointwise, d_p), stacks), d_eps

        c_prev_TxB, products_TxB = saved[0], tuple(saved[1:])
        (dcarry0, dpointwise, products_TxB), dprobe = jax.lax.scan(
            body, (dfinal, zeros, products_TxB),
            (jnp.arange(xs_TxB.shape[0]), mask_TxB, probe, dy_TxBxH, c_prev_TxB),
            reverse=not reverse, unroll=unroll)
        # (xp, hr) -> (d_xp, d_hr); (xp + hr, None) -> (d_hr, None): d_xp == d_hr
        dxp_TxBxG, dhr_TxBxG = ((products_TxB[0],) * 2 if products_TxB[1] is None
                                else products_TxB)
    if dxp_TxBxG is None:  # remat, update_reads_sum: d_xp == d_hr
        dxp_TxBxG = dhr_TxBxG
    # the weight gradients as products over all T·B rows at once
    affine = project_step is not None and _affine_projection(cell, params)
    dparams = jax.tree.map(jnp.zeros_like, params)
    dparams.update(dpointwise)
    dparams.update(_weight_gradients(cell, saved[0].h, xs_TxB if affine else None,
                                     dhr_TxBxG, dxp_TxBxG, params))
    if project_step is None:
        dxs = dxp_TxBxG.astype(xs_TxB.dtype)
    elif affine:  # dL/dx_t = dxp_t Wᵀ
        dxs = cell.matmul(dxp_TxBxG, params["kernel"].T).astype(xs_TxB.dtype)
    else:
        T, B = xs_TxB.shape[:2]
        _, project_vjp = jax.vjp(project_step, params, xs_TxB.reshape(T * B, -1))
        dproject, dx = project_vjp(dxp_TxBxG.reshape(T * B, -1))
        dparams = jax.tree.map(jnp.add, dparams, dproject)
        dxs = dx.reshape(xs_TxB.shape)
    return dparams, dxs, dcarry0, None, dprobe


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _fused_scan(cell, reverse, unroll, remat, project_step, params, xs_TxB, carry, mask_TxB,
                probe):
    # without differentiation: the forward loop alone, keeping no residuals
    final, y_TxBxH = _fused_loop(cell, reverse, unroll, remat, project_step, params, xs_TxB,
                                 carry, mask_TxB, probe, keep=False)
    return y_TxBxH, final


_fused_scan.defvjp(_fused_forward, _fused_backward)


def fused_scan_driver(cell: Cell, params, xs: jax.Array, carry, seq_lengths_B=None, *,
                      reverse: bool = False, unroll: int = 1, remat: bool = False, probe=None,
                      project_step=None):
    """``scan_driver`` for a cell with :meth:`~rnnlab.cells.base.Cell.update`, with fused
    backpropagation through time: same outputs, same gradients, another backward pass.

    Autodiff of ``lax.scan`` accumulates the gradient of the loop-invariant recurrent kernel
    inside the backward loop, one ``[H, B] x [B, G]`` product and an ``[H, G]`` addition per
    step. Here a ``jax.custom_vjp`` runs the backward loop with only the data gradient
    ``dL/dh_{t-1} += dhr_t Uᵀ`` and the VJP of the cell's pointwise ``update`` (from
    ``jax.vjp``, no hand-written derivatives), and computes ``dU = Σ_t h_{t-1}ᵀ dhr_t`` after
    the loop as one ``[H, T·B] x [T·B, G]`` product; with ``project_step`` the input kernel's
    and bias's gradients are likewise one product over all steps. This is the layout of
    cuDNN's and PyTorch's RNN backward passes (Appleyard, Kočiský & Blunsom 2016, "Optimizing
    Performance of Recurrent Neural Networks on GPUs", arXiv:1604.01946, section 3).

    Args and returns as :func:`scan_driver`, with ``cell`` instead of ``step`` and
    ``probed_step`` (the probe goes through ``cell.update``). When differentiated, the
    forward loop keeps, per step, the previous carry and (without ``remat``) ``xp_t`` and
    ``hr_t``, or their sum for a cell with ``update_reads_sum``; with ``remat`` only the
    carry, and the backward loop recomputes the products. The update's activations are
    recomputed in the backward loop from these.

    Forward-mode differentiation (``jax.jvp``) is not defined through it (a ``custom_vjp``);
    use ``bptt="autodiff"`` for that.

    Raises:
      ValueError: ``cell`` has no ``update`` (``cell.fusable`` is False), ``T == 0``, or
        ``seq_lengths_B`` of the wrong shape or out of range.
    """
    if not cell.fusable:
        raise ValueError(f"bptt=fused needs a cell whose step splits into h @ U and a "
                         f"pointwise update (Cell.update); {type(cell).__name__} does not")
    B, T = xs.shape[:2]
    if T == 0:
        raise ValueError(f"the input has no time steps (T=0, shape {xs.shape})")
    mask_TxB = _mask_TxB(seq_lengths_B, T, B)
    xs = zero_padding(xs, mask_TxB)
    y_TxBxH, carry = _fused_scan(cell, reverse, unroll, remat, project_step, params,
                                 jnp.swapaxes(xs, 0, 1), carry, mask_TxB, probe)
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


# What ``unroll=None`` and ``bptt="auto"`` choose on each backend, from measurements
# (docs/benchmarks.md). XLA:CPU: unroll 2 and 1 tie, 4 and 8 are slower; fused BPTT (with its
# backward loop writing the gradients over the saved pre-activations in place) ran the
# training step of the LSTM family, the GRU and the tanh RNN faster than autodiff (GRU
# 0.84-0.87x at B = 64, 1.03x at 32x512x64x256; before the in-place writes the GRU's fused
# step was 1.0-1.36x autodiff's and stayed on autodiff). NVIDIA H100/H200: a scan unrolled 8
# steps ran 2.2-2.9x faster than cuDNN where unroll 1 ran 1.06-1.9x slower than it; fused BPTT
# is not measured there yet.
# ``fused``: the cell classes (and their subclasses) that ``auto`` fuses. Backends not
# measured (TPU) keep the plain settings.
# ``fused_max_rows``: the most members (rows of a vmapped program) per device at which
# ``auto`` still fuses a cell class; above it autodiff. XLA:CPU, the GRU inside the training
# program (adding task, H = 128, 100 steps per call): fused 0.82x autodiff's step at one row,
# level at one row per device of two, 1.15x at two and four rows per device (the fused GRU
# keeps two [T, B, 3H] products per row); the LSTM level at four rows per device.
BACKEND_DEFAULTS = {
    "cpu": {"unroll": 1, "fused": ("LSTM", "GRU", "SimpleRNN"), "fused_max_rows": {"GRU": 1}},
    "gpu": {"unroll": 8, "fused": ()},
}
PLAIN_DEFAULTS = {"unroll": 1, "fused": ()}


def backend_default(option: str, backend: str | None = None):
    """The per-backend default of ``option`` (``unroll``, or ``fused``: the cell classes that
    ``bptt="auto"`` fuses) on ``backend`` (default: JAX's default backend); see
    :data:`BACKEND_DEFAULTS`."""
    backend = backend or jax.default_backend()
    return BACKEND_DEFAULTS.get(backend, PLAIN_DEFAULTS).get(option, {})


def resolve_unroll(unroll: int | None) -> int:
    """``unroll``, or the backend's default for ``None``.

    Raises:
      ValueError: not an int >= 1 or None."""
    check_unroll(unroll)
    return backend_default("unroll") if unroll is None else unroll


def resolve_bptt(bptt: str, cell: Cell, rows_per_device: int = 1) -> str:
    """``fused`` or ``autodiff`` for ``bptt`` (see :class:`Recurrent`); ``auto`` fuses the
    cells the backend's default names (:data:`BACKEND_DEFAULTS`: the LSTM family, the GRU and
    the tanh RNN on CPU), the GRU on CPU only while a vmapped program has at most one member
    per device (``rows_per_device``; ``fused_max_rows``).

    Raises:
      ValueError: an unknown mode, or ``fused`` for a cell without ``update``."""
    if bptt not in BPTT_MODES:
        raise ValueError(f"model.bptt={bptt!r} is not accepted; use one of {BPTT_MODES}")
    if bptt == "fused" and not cell.fusable:
        raise ValueError(f"model.bptt=fused needs a cell whose step splits into h @ U and a "
                         f"pointwise update (Cell.update); {type(cell).__name__} does not "
                         f"(use bptt=auto or autodiff)")
    if bptt == "auto":
        fused = backend_default("fused")
        names = [c.__name__ for c in type(cell).__mro__]
        chosen = cell.fusable and any(n in fused for n in names)
        limits = backend_default("fused_max_rows")
        if any(rows_per_device > limits[n] for n in names if n in limits):
            chosen = False
        return "fused" if chosen else "autodiff"
    return bptt


def loop_driver(step: StepFn, params, xp_BxTxG: jax.Array, carry, seq_lengths_B=None, *,
                reverse: bool = False, unroll: int = 1, remat: bool = False, probe=None,
                project_step=None, probed_step=None):
    """A plain Python loop with ``scan_driver``'s signature; the tests' reference.

    ``unroll`` and ``remat`` change how the scan is compiled, not what it computes, so the
    loop accepts and ignores them."""
    del unroll, remat
    B, T = xp_BxTxG.shape[:2]
    if T == 0:
        raise ValueError(f"the input has no time steps (T=0, shape {xp_BxTxG.shape})")
    mask_TxB = _mask_TxB(seq_lengths_B, T, B)
    xp_BxTxG = zero_padding(xp_BxTxG, mask_TxB)
    order = range(T - 1, -1, -1) if reverse else range(T)
    ys = [None] * T
    for t in order:
        mask_B = None if mask_TxB is None else mask_TxB[t]
        eps = None if probe is None else jax.tree.map(lambda p, t=t: p[t], probe)
        xp_BxG = xp_BxTxG[:, t] if project_step is None else project_step(params, xp_BxTxG[:, t])
        carry, ys[t] = _masked_step(step, params, carry, xp_BxG, mask_B, eps, probed_step)
    return jnp.stack(ys, axis=1), carry


class Recurrent(nn.Module):
    """One recurrent layer: a cell's parameters (``params["cell"]``) run over time.

    Attributes:
      cell: any registered :class:`~rnnlab.cells.base.Cell`.
      reverse: process the sequence from the end (outputs aligned with inputs).
      unroll: steps per scan iteration (>= 1); None: the backend's default
        (:data:`BACKEND_DEFAULTS`: 1 on CPU, 8 on GPUs).
      remat: rematerialise each step in the backward pass (saves memory on long sequences).
      learn_initial_carry: learn the initial carry (one ``[H]`` vector per carry field,
        zeros at init, broadcast over the batch) instead of using zeros.
      parallel: run the whole sequence at once with the cell's ``scan_parallel`` (an
        associative scan over time; cells whose recurrence is linear in the carry: ``mingru``,
        ``minlstm``) instead of stepping; same outputs, gradients, masking and probe.
        ``unroll``, ``remat`` and ``projection`` do not apply.
      projection: where the input-to-gates product runs. ``hoisted``: one matmul over all
        steps before the scan (cuDNN's and PyTorch's layout; fastest on GPU and TPU).
        ``in_scan``: one ``[B, D] x [D, G]`` product per step inside the scan (measured faster
        on XLA:CPU, where the per-step slices of a hoisted projection and the slice-by-slice
        write-back of its gradient run slowly; see ``docs/benchmarks.md``). ``auto``:
        ``in_scan`` on CPU, ``hoisted`` elsewhere. The results are the same.
      bptt: how the backward pass runs. ``fused``: :func:`fused_scan_driver` (only the data
        gradient in the backward loop, weight gradients as one product after it; cells with
        :meth:`~rnnlab.cells.base.Cell.update`: lstm, peephole, cifg, gru with
        ``reset_after``, rnn); ``autodiff``: JAX's derivative of ``lax.scan``; ``auto``:
        the backend's choice per cell (:data:`BACKEND_DEFAULTS`: the LSTM family, the GRU
        and the RNN on CPU, where fusing measured faster). Same gradients (tested to float
        tolerance).
    """

    cell: Cell
    reverse: bool = False
    unroll: int | None = None
    remat: bool = False
    learn_initial_carry: bool = False
    projection: str = "auto"
    parallel: bool = False
    bptt: str = "auto"

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, seq_lengths_B: jax.Array | None = None,
                 initial_carry=None):
        """Returns ``(y_BxTxH, final_carry)``. ``x_BxTxD`` is batch-major."""
        if x_BxTxD.ndim != 3:
            raise ValueError(f"Recurrent expects x of shape [B, T, D]; got {x_BxTxD.shape}")
        unroll = resolve_unroll(self.unroll)
        B, T, D = x_BxTxD.shape
        if T == 0:
            raise ValueError(f"the input has no time steps (T=0, shape {x_BxTxD.shape})")
        if self.has_variable("params", "cell"):  # rnnlab's message, not Flax's shape error
            self.cell.check_input(self.get_variable("params", "cell"), x_BxTxD)
        params = self.param("cell", self.cell.init, D)
        carry = initial_carry
        if carry is None:
            carry = self.cell.initial_carry(params, B)
            if self.learn_initial_carry:
                init_fields = self.param(
                    "initial_carry",
                    lambda key: {k: v[0] for k, v in
                                 self.cell.initial_carry(None, 1)._asdict().items()})
                carry = type(carry)(*(jnp.broadcast_to(init_fields[k], v.shape).astype(v.dtype)
                                      for k, v in carry._asdict().items()))
        probe = None
        if self.has_variable(PROBES, PROBE_NAME) or (
                self.is_mutable_collection(PROBES) and not self.is_initializing()):
            zeros = jax.tree.map(lambda z: jnp.zeros((T, *z.shape), z.dtype), carry)
            probe = self.variable(PROBES, PROBE_NAME, lambda: zeros).value
        if self.parallel:  # the whole sequence at once (the cell's associative scan)
            check_parallel(self.cell)
            x_BxTxD = zero_padding(x_BxTxD, _mask_TxB(seq_lengths_B, T, B))
            return self.cell.scan_parallel(params, self.cell.project(params, x_BxTxD), carry,
                                           seq_lengths_B, reverse=self.reverse, probe=probe)
        if resolve_projection(self.projection) == "hoisted":
            # padding is zeroed before the projection too: its backward pass would multiply a
            # NaN input by a zero gradient (see zero_padding)
            x_BxTxD = zero_padding(x_BxTxD, _mask_TxB(seq_lengths_B, T, B))
            xs, project_step = self.cell.project(params, x_BxTxD), None
        else:  # the input's width was checked against existing parameters above
            xs, project_step = x_BxTxD, self.cell.project_step
        if resolve_bptt(self.bptt, self.cell) == "fused":
            return fused_scan_driver(self.cell, params, xs, carry, seq_lengths_B,
                                     reverse=self.reverse, unroll=unroll,
                                     remat=self.remat, probe=probe, project_step=project_step)
        return scan_driver(self.cell.step, params, xs, carry, seq_lengths_B,
                           reverse=self.reverse, unroll=unroll, remat=self.remat,
                           probe=probe, project_step=project_step,
                           probed_step=self.cell.probed_step)


def check_parallel(cell) -> None:
    """Refuses ``parallel`` for a cell without a parallel mode."""
    if not hasattr(cell, "scan_parallel"):
        raise ValueError(f"model.parallel=true needs a cell with a parallel mode "
                         f"(scan_parallel: mingru, minlstm); cell {type(cell).__name__} has "
                         f"none")


def check_unroll(unroll) -> None:
    if unroll is None:
        return
    if not isinstance(unroll, int) or isinstance(unroll, bool) or unroll < 1:
        raise ValueError(f"model.unroll (steps per scan iteration) must be an int >= 1, or "
                         f"None for the backend's default; got {unroll!r}")


PROJECTIONS = ("auto", "hoisted", "in_scan")


def resolve_projection(projection: str) -> str:
    """``auto`` -> ``in_scan`` on CPU, ``hoisted`` on accelerators."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection={projection!r} is not accepted; use one of {PROJECTIONS}")
    if projection == "auto":
        return "in_scan" if jax.default_backend() == "cpu" else "hoisted"
    return projection


def merge_directions(forward: jax.Array, backward: jax.Array, merge: str) -> jax.Array:
    if merge == "concat":
        return jnp.concatenate([forward, backward], axis=-1)
    if merge == "sum":
        return forward + backward
    raise ValueError(f"merge={merge!r} is not accepted; use one of {MERGES}")


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014, "Dropout: a simple way to prevent neural
    networks from overfitting", JMLR 15): each element kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``. As ``flax.linen.Dropout`` (the same ``dropout`` RNG stream,
    the same mask for the same key), except that the rate may be given per call as an array,
    traced under ``vmap``: the rate of a packed sweep's member (:mod:`rnnlab.packing`).

    Attributes:
      rate: the rate used when the call gives none, in ``[0, 1)``.
    """

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool, rate=None) -> jax.Array:
        """``x`` with dropout (any shape); unchanged when ``deterministic``. ``rate``: a
        scalar (float or array) replacing :attr:`rate`."""
        if deterministic:
            return x
        rate = jnp.asarray(self.rate if rate is None else rate, jnp.float32)
        keep = (1.0 - rate).astype(x.dtype)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


class RecurrentStack(nn.Module):
    """Stacked (optionally bidirectional) recurrent layers, dropout between layers.

    Layer ``i`` is the submodule ``layer_i`` (and ``layer_i_reverse`` when bidirectional).

    Attributes:
      cells: one cell per layer (widths may differ).
      bidirectional: add a reversed layer beside each layer and merge their outputs.
      merge: ``concat`` or ``sum`` of the two directions.
      dropout: dropout rate on the inputs of layers 2..L.
    """

    cells: Sequence[Cell]
    bidirectional: bool = False
    merge: str = "concat"
    dropout: float = 0.0
    unroll: int | None = None
    remat: bool = False
    learn_initial_carry: bool = False
    projection: str = "auto"
    parallel: bool = False
    bptt: str = "auto"

    @nn.compact
    def __call__(self, x_BxTxD, seq_lengths_B=None, *, deterministic: bool = True,
                 dropout_rate=None):
        """Returns ``(y_BxTxH', final_carries)``: ``H'`` is the last width (doubled with
        ``concat``); ``final_carries[i]`` is a carry, or ``(forward, backward)`` carries.
        ``dropout_rate`` (a scalar, may be traced) replaces :attr:`dropout` where dropout
        applies (``dropout > 0``)."""
        if not self.cells:
            raise ValueError("RecurrentStack needs at least one cell; got cells=()")
        if self.merge not in MERGES:
            raise ValueError(f"merge={self.merge!r} is not accepted; use one of {MERGES}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        opts = dict(unroll=self.unroll, remat=self.remat,
                    learn_initial_carry=self.learn_initial_carry, projection=self.projection,
                    parallel=self.parallel, bptt=self.bptt)
        carries = []
        for i, cell in enumerate(self.cells):
            if i > 0 and self.dropout > 0:
                x_BxTxD = Dropout(self.dropout)(x_BxTxD, deterministic=deterministic,
                                                rate=dropout_rate)
            y, carry = Recurrent(cell, name=f"layer_{i}", **opts)(x_BxTxD, seq_lengths_B)
            if self.bidirectional:
                y_rev, carry_rev = Recurrent(cell, reverse=True, name=f"layer_{i}_reverse",
                                             **opts)(x_BxTxD, seq_lengths_B)
                y = merge_directions(y, y_rev, self.merge)
                carry = (carry, carry_rev)
            carries.append(carry)
            x_BxTxD = y
        return x_BxTxD, tuple(carries)
