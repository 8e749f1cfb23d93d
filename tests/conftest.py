"""Strict JAX settings for every test: no silent dtype or rank promotion.

Tests that run the CLI pass ``logger.wandb.mode=disabled`` (or offline, into a temporary
folder) explicitly; nothing here talks to the network.

The suite compiles hundreds of small programs and runs each a few times, so it sets
``JAX_DISABLE_MOST_OPTIMIZATIONS=1`` (XLA's backend optimisation level 0: faster compiles,
slower programs; 27% less wall time on the cell tests), inherited by the CLI subprocesses.
The tests compare against references at float tolerances and runs against runs made under
the same setting; set the variable to 0 to run them on the optimised compiler.
``JAX_NUM_CPU_DEVICES=1``: one CPU device (see below). The tests run in pytest-xdist worker
processes (``-n auto``, at most 4, in pyproject's addopts; ``-n 0`` for one process), each
with these settings.

``XDG_CACHE_HOME`` points at a temporary folder for the session (removed at its end), so the
runs the tests start keep their compilation cache there, not in the user's ~/.cache."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# one CPU device, whatever the machine's cores (rnnlab makes one per core: rnnlab/__init__.py),
# so that runs shard seeds alike everywhere and the suite compiles no partitioned programs;
# tests/test_devices.py asks for more where it checks sharding
os.environ["JAX_NUM_CPU_DEVICES"] = "1"
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rnnlab-tests-cache-")

import jax
import pytest

import rnnlab  # noqa: F401  (sets XLA flags before jax's backend starts)

atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
