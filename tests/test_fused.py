"""Fused backpropagation through time (``bptt="fused"``) against JAX's autodiff of the scan.

Per cell, ``rnnlab.testing.check_fused`` (run by ``check_cell`` in test_cells.py and
test_cells_variants.py) compares the two on one layer. Here: whole models as training uses
them (stacked, bidirectional, learned initial carry, NaN padding, both projections, vmapped
over seeds, the gradient probe), and the choice of mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import gradients
from rnnlab.cells import GRU, LSTM, MGU, PeepholeLSTM, SimpleRNN
from rnnlab.models import SequenceModel
from rnnlab.recurrent import (
    BACKEND_DEFAULTS,
    Recurrent,
    backend_default,
    fused_scan_driver,
    resolve_bptt,
)

B, T, D = 3, 6, 2
LENGTHS = jnp.asarray([6, 4, 0])


def _inputs():
    x = np.array(jax.random.normal(jax.random.key(1), (B, T, D)), np.float32)
    x[1, 4:] = np.nan  # padding: must not reach any gradient
    x[2, :] = np.inf
    return jnp.asarray(x)


def _model(cells, bptt, projection):
    return SequenceModel(cells, output_size=2, bidirectional=True, learn_initial_carry=True,
                         projection=projection, bptt=bptt)


@pytest.mark.parametrize(("cells", "projection"), [
    ((PeepholeLSTM(hidden_size=4), PeepholeLSTM(hidden_size=3)), "in_scan"),
    # the GRU keeps xp and hr apart: dU and (dW, db) are two products (the LSTM family's one);
    # the hoisted projection is check_fused's own case
    ((GRU(hidden_size=4), GRU(hidden_size=3)), "in_scan"),
    pytest.param((SimpleRNN(hidden_size=4), LSTM(hidden_size=3, variant="fgr")), "in_scan",
                 marks=pytest.mark.slow),  # both cells are in check_cell's fused check too
])
def test_fused_model_gradients_equal_autodiff_vmapped_over_seeds(cells, projection):
    x, w = _inputs(), jax.random.normal(jax.random.key(3), (B, T, 2))
    models = {m: _model(cells, m, projection) for m in ("fused", "autodiff")}
    keys = jax.random.split(jax.random.key(0), 2)  # two seeds, vmapped as training runs them
    params = jax.vmap(lambda k: models["autodiff"].init(k, jnp.nan_to_num(x), LENGTHS))(keys)
    probes = jax.vmap(lambda p: gradients.probe_zeros(models["autodiff"], p["params"], x,
                                                      LENGTHS))(params)

    def grads(model):
        def loss(p, probe):
            y = model.apply({"params": p, "probes": probe}, x, LENGTHS)
            return jnp.sum(w * jnp.sin(y))

        return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(
            params["params"], probes)

    fused, autodiff = grads(models["fused"]), grads(models["autodiff"])
    for (path, f), a in zip(jax.tree_util.tree_leaves_with_path(fused),
                            jax.tree.leaves(autodiff), strict=True):
        assert np.all(np.isfinite(f)), f"non-finite fused gradient at {path}"
        np.testing.assert_allclose(f, a, rtol=1e-4, atol=1e-5, err_msg=str(path))
    # the probe's gradient is not trivially zero: the comparison means something
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(fused[1])) > 1e-3


def test_fused_weight_gradient_is_the_sum_over_steps_of_h_prev_times_dz():
    """dU of a one-layer tanh RNN against its definition, Σ_t h_{t-1}ᵀ dz_t, with dz_t from
    a NumPy backward recursion (independent of both drivers)."""
    cell = SimpleRNN(hidden_size=3)
    rng = np.random.default_rng(0)
    p = {k: jnp.asarray(rng.standard_normal(v.shape) * 0.5, jnp.float32)
         for k, v in cell.init(jax.random.key(0), 2).items()}
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    xp = np.asarray(cell.project(p, jnp.asarray(x)), np.float64)
    U = np.asarray(p["recurrent_kernel"], np.float64)

    def loss(params):
        y, _ = fused_scan_driver(cell, params, cell.project(params, jnp.asarray(x)),
                                 cell.initial_carry(params, 2))
        return jnp.sum(y)

    got = jax.grad(loss)(p)["recurrent_kernel"]
    hs = [np.zeros((2, 3))]
    for t in range(5):
        hs.append(np.tanh(xp[:, t] + hs[-1] @ U))
    dU, dh = np.zeros_like(U), np.zeros((2, 3))
    for t in range(4, -1, -1):
        dh = dh + 1.0  # d sum(y) / d h_t
        dz = dh * (1 - hs[t + 1] ** 2)
        dU += hs[t].T @ dz
        dh = dz @ U.T
    np.testing.assert_allclose(got, dU, rtol=1e-5, atol=1e-6)


def test_bptt_mode_resolution_and_refusals():
    assert resolve_bptt("fused", LSTM(hidden_size=2)) == "fused"
    assert resolve_bptt("auto", MGU(hidden_size=2)) == "autodiff"
    on_cpu = backend_default("fused", "cpu")
    assert on_cpu == ("LSTM", "GRU", "SimpleRNN") and backend_default("fused", "tpu") == ()
    if jax.default_backend() == "cpu":  # the LSTM family and the GRU fuse; not the classic GRU
        assert resolve_bptt("auto", PeepholeLSTM(hidden_size=2)) == "fused"
        assert resolve_bptt("auto", GRU(hidden_size=2)) == "fused"
        assert resolve_bptt("auto", GRU(hidden_size=2, reset_after=False)) == "autodiff"
        # the GRU fuses at one member per device only; the LSTM at any count
        assert resolve_bptt("auto", GRU(hidden_size=2), rows_per_device=2) == "autodiff"
        assert resolve_bptt("auto", LSTM(hidden_size=2), rows_per_device=4) == "fused"
        assert resolve_bptt("fused", GRU(hidden_size=2), rows_per_device=4) == "fused"
        from rnnlab.config import compose
        from rnnlab.train import make_train

        def chosen(*overrides):  # the suite runs on one CPU device (conftest)
            return make_train(compose(["cell=gru", "task.length=2", *overrides])).model.bptt

        assert chosen("train.num_seeds=1") == "fused"
        assert chosen("train.num_seeds=2") == "autodiff"
        assert chosen("train.num_seeds=2", "model.bptt=fused") == "fused"
    assert not GRU(hidden_size=2, reset_after=False).fusable and GRU(hidden_size=2).fusable
    assert BACKEND_DEFAULTS["cpu"]["unroll"] == 1 and BACKEND_DEFAULTS["gpu"]["unroll"] == 8
    with pytest.raises(ValueError, match=r"bptt=fused needs a cell.*MGU"):
        Recurrent(MGU(hidden_size=2), bptt="fused").init(jax.random.key(0), jnp.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="'backprop' is not accepted"):
        resolve_bptt("backprop", LSTM(hidden_size=2))
