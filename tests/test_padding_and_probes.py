"""Padded steps holding NaN/inf/huge values, and the gradient probe as the total derivative.

References are computed independently: per-example gradients of the unpadded sequences, and a
hand-unrolled two-layer LSTM in plain JAX whose ``c_t`` and ``h_t`` are perturbed exactly where
autograd would hold them as tensors (``c_t`` before ``h_t`` reads it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import gradients
from rnnlab.cells import CELLS, LSTM, PeepholeLSTM, make_cell
from rnnlab.recurrent import Recurrent, RecurrentStack

LENGTHS = (5, 2)


def _inputs(pad_value):
    x = np.array(jax.random.normal(jax.random.key(1), (2, 5, 2)), np.float32)
    x[1, LENGTHS[1]:] = pad_value
    return jnp.asarray(x)


def _grads_fn(layer):
    """Parameter gradients of a weighted sum of the outputs, jitted (one compile per shape)."""
    def grads(params, x, lengths):
        def loss(p):
            y, _ = layer.apply({"params": p}, x, lengths)
            return (y * jnp.arange(1, y.shape[-1] + 1, dtype=y.dtype)[None, None, :]).sum()

        return jax.grad(loss)(params)

    return jax.jit(grads)


# The padding is zeroed in the driver, before any cell sees it; CI runs the four original cells
# and one cell of each other kind (parallel-capable, elementwise recurrence), the rest is slow.
IN_CI = {"lstm", "peephole", "gru", "rnn", "minlstm", "indrnn"}


@pytest.mark.parametrize("name", [n if n in IN_CI else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CELLS)])
@pytest.mark.parametrize(("reverse", "projection"), [(False, "hoisted"), (True, "in_scan")])
def test_nonfinite_padding_leaves_gradients_equal_to_per_example_sums(name, reverse,
                                                                       projection):
    """Both projections and both directions, for every registered cell (the two cross
    combinations share these code paths: the padding is zeroed before either projection)."""
    layer = Recurrent(make_cell(name, hidden_size=3), reverse=reverse, projection=projection)
    clean = _inputs(0.0)
    params = layer.init(jax.random.key(0), clean, jnp.asarray(LENGTHS))["params"]
    # reference: each sequence alone, unpadded, gradients summed over the examples
    grads = _grads_fn(layer)
    per_example = [grads(params, clean[b:b + 1, :n], None)
                   for b, n in enumerate(LENGTHS)]
    expected = jax.tree.map(lambda *g: sum(g), *per_example)
    for pad in (np.nan, np.inf, 1e30):
        x = _inputs(pad)
        y, _ = layer.apply({"params": params}, x, jnp.asarray(LENGTHS))
        assert np.all(np.isfinite(y)) and np.all(np.asarray(y)[1, LENGTHS[1]:] == 0)
        got = grads(params, x, jnp.asarray(LENGTHS))
        for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got),
                                jax.tree.leaves(expected), strict=True):
            assert np.all(np.isfinite(g)), f"{name} pad={pad}: non-finite gradient at {path}"
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} pad={pad} {path}")


def test_nonfinite_padding_in_a_bidirectional_stack_with_learned_carry():
    stack = RecurrentStack((LSTM(hidden_size=3), make_cell("gru", hidden_size=4)),
                           bidirectional=True, learn_initial_carry=True)
    clean = _inputs(0.0)
    params = stack.init(jax.random.key(0), clean, jnp.asarray(LENGTHS))["params"]
    grads = _grads_fn(stack)
    expected = jax.tree.map(lambda *g: sum(g), *[
        grads(params, clean[b:b + 1, :n], None) for b, n in enumerate(LENGTHS)])
    got = grads(params, _inputs(np.nan), jnp.asarray(LENGTHS))
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6),
                 got, expected)


# ---- the cell-state probe is the total derivative dL/dc_t -----------------------------------
def _hand_lstm_layer(cell, p, x_TxD, dh_TxH, dc_TxH):
    """One layer of a (peephole) LSTM over one unpadded sequence, written out step by step;
    ``dh``/``dc`` are added to ``h_t``/``c_t`` where they are produced (autograd's tensors)."""
    H = cell.hidden_size
    h, c = jnp.zeros(H), jnp.zeros(H)
    peep = p.get("peephole", jnp.zeros((3, H)))
    hs = []
    for t in range(x_TxD.shape[0]):
        z = x_TxD[t] @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"]
        zi, zf, zg, zo = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
        i = jax.nn.sigmoid(zi + peep[0] * c)
        f = jax.nn.sigmoid(zf + peep[1] * c)
        c = f * c + i * jnp.tanh(zg) + dc_TxH[t]
        o = jax.nn.sigmoid(zo + peep[2] * c)
        h = o * jnp.tanh(c) + dh_TxH[t]
        hs.append(h)
    return jnp.stack(hs)


@pytest.mark.parametrize(("cell_cls", "bptt"), [(LSTM, "autodiff"), (PeepholeLSTM, "autodiff"),
                                             (PeepholeLSTM, "fused")])
def test_cell_state_probe_equals_autograd_of_a_hand_unrolled_two_layer_lstm(cell_cls, bptt):
    cells = (cell_cls(hidden_size=4), cell_cls(hidden_size=3))
    stack = RecurrentStack(cells, bptt=bptt)
    B, T, D = 3, 6, 2
    lengths = jnp.asarray([6, 4, 1])
    x = jax.random.normal(jax.random.key(2), (B, T, D))
    w = jax.random.normal(jax.random.key(3), (B, T, 3))
    params = stack.init(jax.random.key(4), x, lengths)["params"]
    # the driver's probe, through the public gradient API
    probes = gradients.probe_zeros(stack, params, x, lengths)

    def loss_fn(p, probes):
        y, _ = stack.apply({"params": p, "probes": probes}, x, lengths)
        return (y * w).sum(), None

    _, _, _, g = gradients.loss_and_gradients(loss_fn, params, probes)
    # the reference, example by example on the unpadded sequence
    for b in range(B):
        n = int(lengths[b])
        zeros = [jnp.zeros((n, c.hidden_size)) for c in cells]

        def ref_loss(dh0, dc0, dh1, dc1, b=b, n=n):
            h0 = _hand_lstm_layer(cells[0], params["layer_0"]["cell"], x[b, :n], dh0, dc0)
            h1 = _hand_lstm_layer(cells[1], params["layer_1"]["cell"], h0, dh1, dc1)
            return (h1 * w[b, :n]).sum()

        dh0, dc0, dh1, dc1 = jax.grad(ref_loss, argnums=(0, 1, 2, 3))(
            zeros[0], zeros[0], zeros[1], zeros[1])
        for layer, (dh, dc) in (("layer_0", (dh0, dc0)), ("layer_1", (dh1, dc1))):
            got = g[layer]["carry"]
            np.testing.assert_allclose(got.h[:n, b], dh, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.c[:n, b], dc, rtol=1e-5, atol=1e-6)
            # padded steps get no gradient
            assert np.all(np.asarray(got.c[n:, b]) == 0) and np.all(np.asarray(got.h[n:, b]) == 0)
        # the last valid c_t is read by h_t: its total derivative is not zero
        assert np.linalg.norm(dc1[-1]) > 1e-3
