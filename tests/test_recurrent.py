"""The driver and the layers: Recurrent against a hand loop, bidirectional, stacking, dropout,
learned initial carry, unroll/remat, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import GRU, LSTM, LSTMCarry, PeepholeLSTM, SimpleRNN
from rnnlab.recurrent import Recurrent, RecurrentStack, resolve_projection
from rnnlab.testing import random_like

B, T, D, H = 3, 5, 3, 4  # the sizes of the shared cell suite, so compiled ops are reused
LENGTHS = np.array([5, 3, 1], np.int32)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)


def init(module, x, seed=0, **kwargs):
    """Random params of the module's shapes (no initializer compiled, no tidy zero biases)."""
    shapes = jax.eval_shape(module.init, jax.random.key(seed), x, **kwargs)["params"]
    return random_like(shapes, np.random.default_rng(seed))


def hand_loop(cell, params, x_BxTxD, reverse=False, carry=None):
    """``cell.step`` in a Python loop over host copies; no driver involved."""
    xp = np.asarray(cell.project(params, x_BxTxD))
    carry = cell.initial_carry(params, x_BxTxD.shape[0]) if carry is None else carry
    ys = [None] * xp.shape[1]
    for t in (range(xp.shape[1] - 1, -1, -1) if reverse else range(xp.shape[1])):
        carry, ys[t] = cell.step(params, carry, xp[:, t])
    return np.stack([np.asarray(y) for y in ys], axis=1), carry


def flip_valid(a_BxTxF, lengths_B):
    """Reverses each example's valid steps in time, leaving its padding where it is."""
    out = np.array(a_BxTxF)
    for b, L in enumerate(lengths_B):
        out[b, :L] = out[b, :L][::-1]
    return out


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                         rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("reverse", [False, True])
def test_recurrent_equals_hand_loop(reverse):
    cell = LSTM(H)
    layer = Recurrent(cell, reverse=reverse)
    x = inputs()
    params = init(layer, x)
    y, final = jax.jit(layer.apply)({"params": params}, x)
    want_y, want_final = hand_loop(cell, params["cell"], x, reverse=reverse)
    np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-5, atol=1e-6)
    assert isinstance(final, LSTMCarry)
    assert_trees_close(final, want_final)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_reverse_is_forward_on_the_flipped_sequence(merge):
    cell = LSTM(H)
    stack = RecurrentStack((cell,), bidirectional=True, merge=merge)
    x = inputs()
    params = init(stack, x, seq_lengths_B=LENGTHS)
    y, carries = jax.jit(stack.apply)({"params": params}, x, LENGTHS)
    assert y.shape == (B, T, 2 * H if merge == "concat" else H)

    forward = jax.jit(Recurrent(cell).apply)
    p_fwd = {"params": params["layer_0"]}
    p_rev = {"params": params["layer_0_reverse"]}
    y_fwd, c_fwd = forward(p_fwd, x, LENGTHS)
    # the reverse layer's params run forward over each example's flipped valid steps
    y_flip, c_flip = forward(p_rev, jnp.asarray(flip_valid(x, LENGTHS)), LENGTHS)
    y_rev = flip_valid(y_flip, LENGTHS)
    want = (np.concatenate([np.asarray(y_fwd), y_rev], axis=-1) if merge == "concat"
            else np.asarray(y_fwd) + y_rev)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-6)
    for b, L in enumerate(LENGTHS):  # padded steps are zero in both directions
        np.testing.assert_array_equal(np.asarray(y)[b, L:], np.zeros_like(want[b, L:]))
    fwd_final, rev_final = carries[0]
    assert_trees_close(fwd_final, c_fwd)
    assert_trees_close(rev_final, c_flip)


def test_stack_with_different_widths_equals_chained_layers():
    cells = (LSTM(3), GRU(5), SimpleRNN(2))
    stack = RecurrentStack(cells)
    x = inputs()
    params = init(stack, x, seq_lengths_B=LENGTHS)
    assert params["layer_1"]["cell"]["kernel"].shape == (3, 15)  # D of layer 1 = width of 0
    assert params["layer_2"]["cell"]["kernel"].shape == (5, 2)
    y, carries = jax.jit(stack.apply)({"params": params}, x, LENGTHS)
    assert y.shape == (B, T, 2)

    @jax.jit
    def chained(params, h):
        finals = []
        for i, cell in enumerate(cells):
            h, final = Recurrent(cell).apply({"params": params[f"layer_{i}"]}, h, LENGTHS)
            finals.append(final)
        return h, finals

    h, finals = chained(params, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(h), rtol=1e-5, atol=1e-6)
    for cell, carry, want in zip(cells, carries, finals, strict=True):
        assert type(carry) is cell.carry_type
        assert_trees_close(carry, want)


def test_dropout_equals_flax_and_takes_a_traced_rate_per_member():
    """rnnlab's Dropout against flax.linen.Dropout (same key, same mask, same scaling); a rate
    given per call, traced under vmap (a packed member's), equals each static rate."""
    from flax import linen as nn

    from rnnlab.recurrent import Dropout

    x = jax.random.normal(jax.random.key(0), (4, 5, 6))
    key = jax.random.key(7)
    for rate in (0.1, 0.25, 0.5):
        want = nn.Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
        got = Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        kept = np.asarray(got) != 0
        np.testing.assert_allclose(np.asarray(got)[kept], np.asarray(x)[kept] / (1 - rate),
                                   rtol=1e-6)
    rates = jnp.asarray([0.1, 0.25, 0.5])
    per_member = jax.jit(jax.vmap(lambda r: Dropout(0.9).apply(
        {}, x, deterministic=False, rate=r, rngs={"dropout": key})))(rates)
    for k, rate in enumerate((0.1, 0.25, 0.5)):
        want = nn.Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
        np.testing.assert_array_equal(np.asarray(per_member[k]), np.asarray(want))
    assert Dropout(0.5).apply({}, x, deterministic=True, rate=0.3) is x


def test_dropout_only_when_not_deterministic():
    cells = (GRU(H), GRU(H))
    with_dropout = RecurrentStack(cells, dropout=0.5)
    without = RecurrentStack(cells)
    x = inputs()
    params = init(without, x)
    apply = jax.jit(with_dropout.apply, static_argnames="deterministic")
    y_eval, _ = apply({"params": params}, x, deterministic=True)
    y_plain, _ = jax.jit(without.apply)({"params": params}, x)
    np.testing.assert_allclose(np.asarray(y_eval), np.asarray(y_plain), rtol=1e-6, atol=1e-7)

    def train(seed):
        return np.asarray(apply({"params": params}, x, deterministic=False,
                                rngs={"dropout": jax.random.key(seed)})[0])

    y_a, y_a_again, y_b = train(1), train(1), train(2)
    np.testing.assert_array_equal(y_a, y_a_again)  # the same key gives the same mask
    assert np.abs(y_a - np.asarray(y_eval)).max() > 1e-3
    assert np.abs(y_a - y_b).max() > 1e-3


def test_learned_initial_carry_is_a_param_and_changes_outputs():
    cell = LSTM(H, recurrent_init="identity")  # no QR to compile for the real init below
    learned = Recurrent(cell, learn_initial_carry=True)
    plain = Recurrent(cell)
    x = inputs()
    params = jax.jit(learned.init)(jax.random.key(0), x)["params"]
    assert set(params) == {"cell", "initial_carry"}
    np.testing.assert_array_equal(np.asarray(params["initial_carry"]["h"]), np.zeros(H))
    np.testing.assert_array_equal(np.asarray(params["initial_carry"]["c"]), np.zeros(H))

    rng = np.random.default_rng(3)
    init_hc = {k: jnp.asarray(rng.standard_normal(H), jnp.float32) for k in ("h", "c")}
    params = {"cell": params["cell"], "initial_carry": init_hc}
    explicit = LSTMCarry(*(jnp.asarray(np.broadcast_to(np.asarray(init_hc[k]), (B, H)))
                           for k in ("h", "c")))

    def loss_learned(p):
        y = learned.apply({"params": p}, x)[0]
        return jnp.sum(y ** 2), y

    def loss_explicit(carry):
        y = plain.apply({"params": {"cell": params["cell"]}}, x, initial_carry=carry)[0]
        return jnp.sum(y ** 2), y

    (_, y_learned), g_learned = jax.jit(jax.value_and_grad(loss_learned, has_aux=True))(params)
    (_, y_explicit), g_explicit = jax.jit(jax.value_and_grad(loss_explicit, has_aux=True))(
        explicit)
    y_zero, _ = jax.jit(plain.apply)({"params": {"cell": params["cell"]}}, x)
    np.testing.assert_allclose(np.asarray(y_learned), np.asarray(y_explicit), rtol=1e-5,
                               atol=1e-6)
    assert np.abs(np.asarray(y_learned) - np.asarray(y_zero)).max() > 1e-2
    # its gradient is the batch sum of the gradients w.r.t. the explicit per-example carry
    for k in ("h", "c"):
        g = np.asarray(g_learned["initial_carry"][k])
        np.testing.assert_allclose(g, np.asarray(getattr(g_explicit, k)).sum(axis=0),
                                   rtol=1e-5, atol=1e-6)
        assert np.abs(g).max() > 0


@pytest.mark.parametrize("cell", [GRU(H), PeepholeLSTM(H)], ids=["gru", "peephole"])
def test_unroll_remat_and_projection_change_nothing(cell):
    x = inputs()
    base = Recurrent(cell, reverse=True, projection="hoisted")
    params = init(base, x, seq_lengths_B=LENGTHS)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, H)), jnp.float32)

    def loss_and_grad(layer):
        def loss(p):
            y, final = layer.apply({"params": p}, x, LENGTHS)
            return jnp.sum(w * y) + jnp.sum(final.h)

        return jax.jit(jax.value_and_grad(loss))(params)

    want = loss_and_grad(base)
    for options in ({"unroll": 3}, {"remat": True}, {"projection": "in_scan"},
                    {"projection": "in_scan", "unroll": 2, "remat": True}):
        got = loss_and_grad(Recurrent(cell, reverse=True, **options))
        assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_projection_auto_and_bad_values():
    assert resolve_projection("auto") == ("in_scan" if jax.default_backend() == "cpu"
                                          else "hoisted")
    with pytest.raises(ValueError, match="projection='fused' is not accepted"):
        resolve_projection("fused")


def test_seq_lengths_of_wrong_shape_raise():
    layer = Recurrent(SimpleRNN(H))
    x = inputs()
    with pytest.raises(ValueError, match=r"seq_lengths must have shape \[B\]=\(3,\); got \(2,\)"):
        jax.eval_shape(layer.init, jax.random.key(0), x, jnp.array([5, 3], jnp.int32))
    with pytest.raises(ValueError, match=r"seq_lengths must have shape \[B\]=\(3,\); "
                                         r"got \(3, 1\)"):
        jax.eval_shape(layer.init, jax.random.key(0), x, jnp.ones((3, 1), jnp.int32))


def test_layer_input_validation():
    with pytest.raises(ValueError, match=r"Recurrent expects x of shape \[B, T, D\]; "
                                         r"got \(5, 3\)"):
        jax.eval_shape(Recurrent(SimpleRNN(H)).init, jax.random.key(0),
                       jnp.zeros((T, D), jnp.float32))
    with pytest.raises(ValueError, match=r"merge='max' is not accepted; use one of "
                                         r"\('concat', 'sum'\)"):
        jax.eval_shape(RecurrentStack((SimpleRNN(H),), bidirectional=True, merge="max").init,
                       jax.random.key(0), inputs())
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got 1.0"):
        jax.eval_shape(RecurrentStack((SimpleRNN(H),), dropout=1.0).init, jax.random.key(0),
                       inputs())



@pytest.mark.parametrize("projection", ["in_scan", "hoisted"])
@pytest.mark.parametrize("parallel", [False, True])
def test_an_input_of_another_width_than_the_params_is_refused_by_name(projection, parallel):
    """Applying parameters made for D features to D + 1 gives rnnlab's message naming both
    widths, on every path (Flax's own ScopeParamShapeError named neither)."""
    from rnnlab.cells import MinGRU

    cell = MinGRU(H) if parallel else LSTM(H)
    layer = Recurrent(cell, projection=projection, parallel=parallel)
    params = layer.init(jax.random.key(0), inputs())
    wider = jnp.zeros((B, T, D + 1), jnp.float32)
    with pytest.raises(ValueError, match=rf"x has {D + 1} features \(shape \({B}, {T}, "
                                         rf"{D + 1}\)\) but the cell was initialised for "
                                         rf"input_size={D}"):
        layer.apply(params, wider)
    stack = RecurrentStack((cell, cell), projection=projection)
    stack_params = stack.init(jax.random.key(0), inputs())
    with pytest.raises(ValueError, match=rf"initialised for input_size={D}"):
        stack.apply(stack_params, wider)
