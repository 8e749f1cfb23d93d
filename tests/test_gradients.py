"""The gradient probe (dL/d carry_t through time) and its summaries."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from rnnlab import gradients
from rnnlab.cells import GRU, LSTM, HiddenCarry
from rnnlab.cells.base import Cell, Params, dtype_of
from rnnlab.models import SequenceModel
from rnnlab.recurrent import PROBE_NAME, Recurrent
from rnnlab.testing import check_init, check_shapes, random_like

B, T, D, H = 3, 5, 3, 4
LENGTHS = np.array([5, 3, 1], np.int32)


@dataclasses.dataclass(frozen=True)
class DecayCell(Cell):
    """A linear test cell, not registered: ``h_t = a h_{t-1} + W x_t + b`` with a learned scalar
    ``a`` (``params["a"]``, shape ``[1]``), so ``dh_T/dh_t = a^(T-1-t) I``."""

    decay: float = 0.8

    gates = ("h",)
    carry_type = HiddenCarry

    def init(self, key: jax.Array, input_size: int) -> Params:
        dt = dtype_of(self.param_dtype)
        H = self.hidden_size
        return {"kernel": jax.random.normal(key, (input_size, H), dt),
                "bias": jnp.zeros((H,), dt), "a": jnp.full((1,), self.decay, dt)}

    def step(self, params: Params, carry: HiddenCarry, xp_BxG: jax.Array):
        a_1x1 = params["a"].astype(xp_BxG.dtype)[None, :]
        h_BxH = a_1x1 * carry.h + xp_BxG
        return HiddenCarry(h_BxH), h_BxH

    def param_count(self, input_size: int) -> int:
        return self.hidden_size * input_size + self.hidden_size + 1


def inputs(seed=0, shape=(B, T, D)):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def random_params(module, x, seed=0, **kwargs):
    shapes = jax.eval_shape(module.init, jax.random.key(seed), x, **kwargs)["params"]
    return random_like(shapes, np.random.default_rng(seed))


def test_probe_on_linear_recurrence_is_a_power_of_a():
    a, hidden, steps = 0.7, 2, 8
    layer = Recurrent(DecayCell(hidden_size=hidden, decay=a))
    x = inputs(shape=(2, steps, 3))
    params = layer.init(jax.random.key(0), x)["params"]
    w_BxH = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)

    def loss_fn(params, probes):  # a loss on h_T alone
        _, final = layer.apply({"params": params, "probes": probes}, x)
        return jnp.sum(jnp.asarray(w_BxH) * final.h), None

    probes = gradients.probe_zeros(layer, params, x)
    _, _, _, g = jax.jit(gradients.loss_and_gradients, static_argnums=0)(loss_fn, params, probes)
    g_TxBxH = np.asarray(g[PROBE_NAME].h)
    powers_T = a ** (steps - 1 - np.arange(steps))  # dL/dh_t = a^(T-1-t) dL/dh_T
    want = powers_T[:, None, None] * w_BxH[None]
    np.testing.assert_allclose(g_TxBxH, want, rtol=1e-6, atol=1e-7)

    # the curve's summaries recover the decay rate
    [curve] = gradients.norms_through_time(g).values()  # one layer, one carry field
    mean_T = np.asarray(curve["mean"])
    np.testing.assert_allclose(mean_T, powers_T * np.linalg.norm(w_BxH, axis=1).mean(),
                               rtol=1e-6)
    assert gradients.half_life(mean_T) == pytest.approx(math.log(2) / -math.log(a), rel=1e-5)
    assert gradients.first_last_ratio(mean_T) == pytest.approx(a ** (steps - 1), rel=1e-5)


def test_probe_equals_grad_wrt_carry_of_a_split_sequence():
    # dL/d carry_k by another route: run steps 0..k, then differentiate the rest of the loss
    # w.r.t. the carry handed to the second half as its initial carry.
    layer = Recurrent(LSTM(H))
    x = inputs()
    params = random_params(layer, x)
    w_BxTxH = inputs(seed=1, shape=(B, T, H))

    def loss_fn(params, probes):  # every step's output enters the loss
        y, _ = layer.apply({"params": params, "probes": probes}, x)
        return jnp.sum(w_BxTxH * y), None

    probes = gradients.probe_zeros(layer, params, x)
    _, _, _, g = jax.jit(gradients.loss_and_gradients, static_argnums=0)(loss_fn, params, probes)
    g_h, g_c = np.asarray(g[PROBE_NAME].h), np.asarray(g[PROBE_NAME].c)

    apply = jax.jit(layer.apply)
    for k in (1, 3):
        _, carry_k = apply({"params": params}, x[:, :k + 1])

        def rest(carry, k=k):
            y_rest, _ = layer.apply({"params": params}, x[:, k + 1:], initial_carry=carry)
            return jnp.sum(w_BxTxH[:, k] * carry.h) + jnp.sum(w_BxTxH[:, k + 1:] * y_rest)

        want = jax.jit(jax.grad(rest))(carry_k)
        np.testing.assert_allclose(g_h[k], np.asarray(want.h), rtol=1e-5, atol=1e-6)
        # the total dL/dc_k adds the same-step path c_k -> h_k = o_k tanh(c_k) to the path
        # through later steps: dh_k/dc_k = o_k (1 - tanh^2 c_k), with o_k = h_k / tanh(c_k)
        dh_dc = _dh_dc(carry_k)
        np.testing.assert_allclose(g_c[k], np.asarray(want.c + want.h * dh_dc), rtol=1e-4,
                                   atol=1e-6)
    # the last step: only its own output term reads h_T, and c_T only through h_T
    np.testing.assert_allclose(g_h[T - 1], np.asarray(w_BxTxH[:, T - 1]), rtol=1e-6)
    _, carry_last = apply({"params": params}, x)
    np.testing.assert_allclose(g_c[T - 1], np.asarray(w_BxTxH[:, T - 1] * _dh_dc(carry_last)),
                               rtol=1e-4, atol=1e-7)


def _dh_dc(carry):
    """``dh/dc`` of ``h = o tanh(c)`` for an LSTM carry, with ``o = h / tanh(c)``."""
    tanh_c = np.tanh(np.asarray(carry.c, np.float64))
    return np.asarray(carry.h, np.float64) / tanh_c * (1 - tanh_c**2)


@pytest.fixture(scope="module")
def bidirectional_model():
    """A two-layer bidirectional model, random params and a loss on every step, with padding."""
    model = SequenceModel(cells=(LSTM(H), GRU(H)), output_size=2, bidirectional=True)
    x = inputs()
    params = random_params(model, x, seq_lengths_B=LENGTHS)
    w_BxTx2 = inputs(seed=2, shape=(B, T, 2))

    def loss_fn(params, probes=None):
        variables = {"params": params} if probes is None else {"params": params,
                                                                "probes": probes}
        out = model.apply(variables, x, LENGTHS)
        return jnp.sum(w_BxTx2 * out), None

    probes = gradients.probe_zeros(model, params, x, LENGTHS)
    with_probe = jax.jit(gradients.loss_and_gradients, static_argnums=0)(loss_fn, params, probes)
    return model, params, loss_fn, with_probe


def test_probe_leaves_loss_and_param_gradients_unchanged(bidirectional_model):
    _, params, loss_fn, (loss, _, g_params, _) = bidirectional_model
    (loss_off, _), g_off = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    # adding exact zeros changes no value; the two programs are compiled apart, and at the
    # suite's optimisation level 0 (conftest) they fuse differently (the fused driver's one
    # [x_t, h] [W; U] product per step among them), so loss and gradients agree to a few
    # float32 ulps rather than bitwise
    np.testing.assert_allclose(float(loss), float(loss_off), rtol=2e-6)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                         rtol=1e-5, atol=1e-7),
                 g_params, g_off)


def test_padded_steps_get_exactly_zero_gradient(bidirectional_model):
    *_, (_, _, _, g_probes) = bidirectional_model
    curves = gradients.norms_through_time(g_probes, jnp.asarray(LENGTHS))
    expected = {f"layer_{i}{d}/{f}" for i, fields in ((0, "hc"), (1, "h"))
                for d in ("", "_reverse") for f in fields}
    assert set(curves) == expected
    valid_TxB = np.arange(T)[:, None] < LENGTHS[None, :]
    for path, carry in flatten_dict(g_probes).items():
        name = gradients.layer_name(path)
        for field, g_TxBxH in carry._asdict().items():
            norms_TxB = np.linalg.norm(np.asarray(g_TxBxH, np.float64), axis=-1)
            np.testing.assert_array_equal(norms_TxB[~valid_TxB], 0.0,
                                          err_msg=f"{name}/{field} on padded steps")
            # every valid step reaches the loss, the last one's cell state through its h_t
            assert (norms_TxB[valid_TxB] > 0).all(), f"{name}/{field} on valid steps"
            # batch statistics over the valid examples of each step only
            want_mean = [norms_TxB[t, valid_TxB[t]].mean() for t in range(T)]
            want_std = [norms_TxB[t, valid_TxB[t]].std() for t in range(T)]
            got = curves[f"{name}/{field}"]
            np.testing.assert_allclose(np.asarray(got["mean"]), want_mean, rtol=1e-5)
            np.testing.assert_allclose(np.asarray(got["std"]), want_std, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("a", [0.5, 0.9, 0.99])
def test_half_life_and_ratio_of_geometric_curves(a):
    steps = 12
    curve_T = 3.0 * a ** (steps - 1 - np.arange(steps))  # decays with distance from the end
    assert gradients.half_life(curve_T) == pytest.approx(math.log(2) / -math.log(a), rel=1e-9)
    assert gradients.first_last_ratio(curve_T) == pytest.approx(a ** (steps - 1), rel=1e-9)
    # positions without valid examples (NaN) are left out of the fit
    holey = curve_T.copy()
    holey[[2, 5]] = np.nan
    assert gradients.half_life(holey) == pytest.approx(math.log(2) / -math.log(a), rel=1e-9)
    # an exact zero at the end (a curve the loss does not reach there) is skipped
    zero_end = np.append(curve_T, 0.0)
    assert gradients.first_last_ratio(zero_end) == pytest.approx(a ** (steps - 1), rel=1e-9)
    summary = gradients.summarize({"layer_0/h": {"mean": curve_T, "std": 0 * curve_T}})
    assert summary == pytest.approx({"layer_0/h/half_life": math.log(2) / -math.log(a),
                                     "layer_0/h/first_last_ratio": a ** (steps - 1)})


def test_half_life_of_non_decaying_curves_is_infinite():
    assert gradients.half_life(1.1 ** -np.arange(6.0)) == math.inf  # grows with distance
    assert gradients.half_life(np.full(6, 2.0)) == math.inf
    assert math.isnan(gradients.half_life(np.array([np.nan, 1.0, np.nan])))


def test_decay_cell_passes_the_carry_contract():
    # the test cell follows the contract the probe relies on (h output == carry.h, [B, H])
    check_init(DecayCell(hidden_size=2), 3)
    check_shapes(DecayCell(hidden_size=2), 3)
