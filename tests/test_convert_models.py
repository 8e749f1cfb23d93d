"""Whole SequenceModels to and from Keras' get_weights() list: a NumPy transcription of the
Keras Sequential's forward pass on the exported list gives rnnlab's outputs, and the import
inverts the export exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import GRU, LSTM, PeepholeLSTM
from rnnlab.convert import model_from_keras, model_to_keras
from rnnlab.models import SequenceModel
from rnnlab.testing import perturb_params


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def keras_lstm(w, x, peephole=False, reverse=False, return_sequences=True):
    """keras.layers.LSTM (gate order i, f, c, o) or TF's PeepholeLSTMCell, NumPy float64."""
    kernel, rec, bias = w[:3]
    B, T, _ = x.shape
    H = rec.shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    ys = np.zeros((B, T, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        z = x[:, t] @ kernel + h @ rec + bias
        zi, zf, zc, zo = (z[:, k * H:(k + 1) * H] for k in range(4))
        if peephole:
            zi, zf = zi + w[3] * c, zf + w[4] * c
        c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
        if peephole:
            zo = zo + w[5] * c
        h = sigmoid(zo) * np.tanh(c)
        ys[:, t] = h
    return ys if return_sequences else h


def keras_gru(w, x, reverse=False, return_sequences=True):
    """keras.layers.GRU(reset_after=True): gate order z, r, h; bias [2, 3H]."""
    kernel, rec, bias = w
    B, T, _ = x.shape
    H = rec.shape[0]
    h = np.zeros((B, H))
    ys = np.zeros((B, T, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        xi = x[:, t] @ kernel + bias[0]
        hh = h @ rec + bias[1]
        z = sigmoid(xi[:, :H] + hh[:, :H])
        r = sigmoid(xi[:, H:2 * H] + hh[:, H:2 * H])
        n = np.tanh(xi[:, 2 * H:] + r * hh[:, 2 * H:])
        h = z * h + (1 - z) * n
        ys[:, t] = h
    return ys if return_sequences else h


def _params(model, x, seed=0):
    shapes = model.init(jax.random.key(seed), jnp.asarray(x, jnp.float32))["params"]
    return perturb_params(shapes, np.random.default_rng(seed))


def test_stock_lstm_model_matches_keras_forward_and_round_trips():
    # the seed notes' stock model: LSTM(return_sequences) -> Dropout -> LSTM -> Dropout ->
    # Dense(1), on one feature
    model = SequenceModel(cells=(LSTM(5), LSTM(5)), output_size=1, readout="last", dropout=0.2)
    x = np.random.default_rng(1).standard_normal((4, 6, 1))
    params = _params(model, x)
    weights = model_to_keras(model, params)
    # Keras' shapes: LSTM(5) on 1 feature, LSTM(5) on 5, Dense(1)
    assert [w.shape for w in weights] == [(1, 20), (5, 20), (20,), (5, 20), (5, 20), (20,),
                                          (5, 1), (1,)]
    w64 = [np.asarray(w, np.float64) for w in weights]
    y1 = keras_lstm(w64[0:3], x)
    h2 = keras_lstm(w64[3:6], y1, return_sequences=False)
    want = h2 @ w64[6] + w64[7]
    got = model.apply({"params": params}, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)
    back = model_from_keras(model, weights)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 back, jax.tree.map(np.asarray, params))


def test_bidirectional_gru_with_head_matches_keras_forward():
    # Bidirectional(GRU(4, return_sequences=True)) -> Dense(3, relu) -> Dense(2), every step
    model = SequenceModel(cells=(GRU(4),), output_size=2, bidirectional=True, head_sizes=(3,))
    x = np.random.default_rng(2).standard_normal((2, 5, 3))
    params = _params(model, x, seed=1)
    w = [np.asarray(v, np.float64) for v in model_to_keras(model, params)]
    y = np.concatenate([keras_gru(w[0:3], x), keras_gru(w[3:6], x, reverse=True)], axis=-1)
    want = np.maximum(y @ w[6] + w[7], 0) @ w[8] + w[9]
    got = model.apply({"params": params}, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)
    back = model_from_keras(model, model_to_keras(model, params))
    assert jax.tree.structure(back) == jax.tree.structure(jax.tree.map(np.asarray, params))


def test_peephole_model_matches_tf_peephole_cell():
    model = SequenceModel(cells=(PeepholeLSTM(3),), output_size=1, readout="last")
    x = np.random.default_rng(3).standard_normal((2, 4, 2))
    params = _params(model, x, seed=2)
    w = [np.asarray(v, np.float64) for v in model_to_keras(model, params)]
    assert [v.shape for v in w] == [(2, 12), (3, 12), (12,), (3,), (3,), (3,), (3, 1), (1,)]
    want = keras_lstm(w[:6], x, peephole=True, return_sequences=False) @ w[6] + w[7]
    got = model.apply({"params": params}, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)


def test_model_conversion_errors():
    model = SequenceModel(cells=(LSTM(5),), output_size=1, readout="last")
    params = _params(model, np.zeros((1, 2, 1)))
    weights = model_to_keras(model, params)
    with pytest.raises(ValueError, match=r"the model takes 5 Keras arrays; got 6"):
        model_from_keras(model, [*weights, weights[-1]])
    with pytest.raises(ValueError, match=r"Keras Dense 'output' must be kernel \[in, 1\] and "
                                         r"bias \[1\]; got \(5, 2\) and \(1,\)"):
        model_from_keras(model, [*weights[:3], np.zeros((5, 2)), weights[4]])
    with pytest.raises(ValueError, match="learn_initial_carry=True has no Keras counterpart"):
        model_to_keras(SequenceModel(cells=(LSTM(5),), output_size=1,
                                     learn_initial_carry=True), params)
    with pytest.raises(ValueError, match="params have H=5 but the cell has hidden_size=6"):
        model_from_keras(SequenceModel(cells=(LSTM(6),), output_size=1), weights)


def test_variants_have_no_framework_layout():
    from rnnlab.convert import to_keras, to_torch

    cell = LSTM(4, variant="noaf")  # same shapes as the vanilla LSTM, other equations
    params = cell.init(jax.random.key(0), 2)
    for convert in (to_keras, to_torch):
        with pytest.raises(ValueError, match=r"cell\.variant='noaf' has no PyTorch or Keras "
                                             r"layer; only variant='vanilla' converts"):
            convert(cell, params)
