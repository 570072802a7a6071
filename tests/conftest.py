"""Test configuration shared by the whole suite.

Two logical CPU devices are configured before TensorFlow initialises its runtime so that
MirroredStrategy tests run on a CPU-only machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # the runtime was already initialised by another plugin
    pass


def has_gpu():
    """True when TensorFlow sees a GPU."""
    return bool(tf.config.list_physical_devices("GPU"))
