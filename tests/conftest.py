"""Strict JAX settings for every test: no silent dtype or rank promotion.

Tests that run the CLI pass ``logger.wandb.mode=disabled`` (or offline, into a temporary
folder) explicitly; nothing here talks to the network."""

import jax
import pytest

import rnnlab  # noqa: F401  (sets XLA flags before jax's backend starts)

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
