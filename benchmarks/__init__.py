"""Examples and benchmarks of ramda_optax, run as ``python -m benchmarks.<name>``."""
