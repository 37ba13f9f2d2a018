"""Test-wide setup: 8 simulated CPU devices for sharding tests, TensorFlow kept off accelerators.

XLA reads XLA_FLAGS once, when the backend starts, so this must run before any test imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
