"""The NNX and Equinox adapters give the linen path's outputs and gradients (parameters and
the gradient probe), with masking, a bidirectional stack and several cells, and drop into a
user's own module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab.cells import GRU, LSTM, MinGRU, PeepholeLSTM
from rnnlab.recurrent import PROBES
from rnnlab.recurrent import RecurrentStack as LinenStack

OPTIONS = {"bidirectional": True, "merge": "concat"}
CELLS = (PeepholeLSTM(4), GRU(3), MinGRU(2))
D, B, T = 3, 2, 6


def _data():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((B, T, 4)), jnp.float32)  # 2 * last width (concat)
    return x, w, jnp.asarray([T, 3], jnp.int32)


def _linen_reference(params, probes, x, w, lengths):
    """Loss, param grads and probe grads through a fresh linen stack."""
    stack = LinenStack(CELLS, **OPTIONS)

    def loss(params, probes):
        y, carries = stack.apply({"params": params, PROBES: probes}, x, lengths)
        return jnp.sum(w * y) + sum(jnp.sum(c.h) for c in jax.tree.leaves(
            carries, is_leaf=lambda n: hasattr(n, "_fields")))

    value, (g_params, g_probes) = jax.value_and_grad(loss, argnums=(0, 1))(params, probes)
    return value, g_params, g_probes


def _loss_of(call, x, w, lengths, probes):
    y, carries = call(x, lengths, probes=probes)
    return jnp.sum(w * y) + sum(jnp.sum(c.h) for c in jax.tree.leaves(
        carries, is_leaf=lambda n: hasattr(n, "_fields")))


def _assert_close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                         rtol=1e-6, atol=1e-7), a, b)


def test_nnx_adapter_equals_the_linen_path():
    from rnnlab.adapters.nnx import RecurrentStack

    x, w, lengths = _data()
    stack = RecurrentStack(CELLS, D, rngs=nnx.Rngs(0), **OPTIONS)
    params = stack.params.get_value()
    probes = stack.probe_zeros(x, lengths)

    def loss(module, probes):
        return _loss_of(module, x, w, lengths, probes)

    value, (g_module, g_probes) = nnx.value_and_grad(loss, argnums=(0, 1))(stack, probes)
    want_value, want_params, want_probes = _linen_reference(params, probes, x, w, lengths)
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6)
    _assert_close(g_module["params"].get_value(), want_params)
    _assert_close(g_probes, want_probes)
    # the probe is live: dL/dh at the last valid step of example 1 (t = 2) is nonzero,
    # and zero on its padding
    g_h = np.asarray(g_probes["layer_0"]["carry"].h)
    assert np.abs(g_h[2, 1]).sum() > 0 and np.abs(g_h[3:, 1]).sum() == 0


def test_equinox_adapter_equals_the_linen_path():
    eqx = pytest.importorskip("equinox")
    from rnnlab.adapters.equinox import RecurrentStack

    x, w, lengths = _data()
    key = jax.random.key(3)
    stack = RecurrentStack(CELLS, D, key=key, **OPTIONS)
    # the same init as the linen stack's with the same key
    _assert_close(stack.params,
                  LinenStack(CELLS, **OPTIONS).init(key, jnp.zeros((1, 1, D)))["params"])
    probes = stack.probe_zeros(x, lengths)

    @eqx.filter_value_and_grad
    def loss(parts):
        module, probes = parts
        return _loss_of(module, x, w, lengths, probes)

    value, (g_module, g_probes) = loss((stack, probes))
    want_value, want_params, want_probes = _linen_reference(stack.params, probes, x, w, lengths)
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6)
    _assert_close(g_module.params, want_params)
    _assert_close(g_probes, want_probes)


def test_adapters_inside_user_modules_train():
    eqx = pytest.importorskip("equinox")
    from rnnlab.adapters.equinox import RecurrentStack as EqxStack
    from rnnlab.adapters.nnx import RecurrentStack as NNXStack

    x, _, _ = _data()
    target = jnp.ones((B, 1), jnp.float32)

    class NNXModel(nnx.Module):
        def __init__(self, rngs):
            self.rnn = NNXStack([LSTM(5)], D, rngs=rngs)
            self.head = nnx.Linear(5, 1, rngs=rngs)

        def __call__(self, x):
            y, _ = self.rnn(x)
            return self.head(y[:, -1])

    class EqxModel(eqx.Module):
        rnn: EqxStack
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.rnn = EqxStack([LSTM(5)], D, key=k1)
            self.head = eqx.nn.Linear(5, 1, key=k2)

        def __call__(self, x):
            y, _ = self.rnn(x)
            return jax.vmap(self.head)(y[:, -1])

    nnx_model = NNXModel(nnx.Rngs(1))
    grads = nnx.grad(lambda m: jnp.mean((m(x) - target) ** 2))(nnx_model)
    eqx_model = EqxModel(jax.random.key(1))
    eqx_grads = eqx.filter_grad(lambda m: jnp.mean((m(x) - target) ** 2))(eqx_model)
    for tree in (nnx.state(grads, nnx.Param), eqx.filter(eqx_grads, eqx.is_array)):
        leaves = [np.asarray(v) for v in jax.tree.leaves(tree)]
        assert len(leaves) == 5  # kernel, recurrent_kernel, bias, head weight, head bias
        assert all(np.all(np.isfinite(v)) and np.any(v != 0) for v in leaves)


def test_adapter_errors():
    from rnnlab.adapters import make_stack

    with pytest.raises(TypeError, match=r"cells\[0\] must be a rnnlab Cell; got str"):
        make_stack(["lstm"])
    with pytest.raises(TypeError, match=r"unknown RecurrentStack option\(s\) \['bidirectonal'\]"):
        make_stack([LSTM(2)], bidirectonal=True)
