"""rnnlab: recurrent-cell experiments in JAX/Flax."""

__version__ = "0.1.0"
