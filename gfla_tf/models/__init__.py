"""The GFLA networks as Keras 3 models, and builders from ``config.model``.

``build_generator(model_config)`` returns a built ``GFLAGenerator`` (flow estimator F
inside, as ``generator.flow_estimator``); ``build_discriminator(model_config)`` a built
``Discriminator``; ``clone_with_impl(generator, impl)`` a copy with the same weights whose
local attention runs another op implementation (export uses "reference").
"""

import inspect

import keras

from gfla_tf.models.discriminator import Discriminator
from gfla_tf.models.flow_estimator import FlowEstimator
from gfla_tf.models.generator import GFLAGenerator


def _generator_fields():
    # The fields of ``config.model`` that are arguments of GFLAGenerator: read from the two
    # sources of truth (the generator's signature and the base config), never listed here.
    from gfla_tf.configs import base

    parameters = inspect.signature(GFLAGenerator.__init__).parameters
    return tuple(name for name in base.get_base_config().model if name in parameters)


GENERATOR_FIELDS = _generator_fields()


def _field(model_config, name):
    try:
        return model_config[name]
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"model config is missing the field {name!r}") from err


def generator_kwargs(model_config):
    """The ``GFLAGenerator`` arguments that ``config.model`` sets.

    Args:
      model_config: ``config.model`` (ConfigDict or dict).

    Returns:
      Dict of keyword arguments, one per name in :data:`GENERATOR_FIELDS`.

    Raises:
      ValueError: a field is missing.
    """
    return {name: _field(model_config, name) for name in GENERATOR_FIELDS}


def build_generator(model_config, impl=None, dtype=None):
    """Builds the GFLA generator described by ``config.model``.

    Args:
      model_config: ``config.model`` (ConfigDict or dict) with the fields of
        ``configs/base.py``.
      impl: overrides ``model_config.op_impl`` ("auto", "custom" or "reference").
      dtype: optional Keras dtype policy (e.g. "mixed_float16"); default the global one.

    Returns:
      A built ``GFLAGenerator``.

    Raises:
      ValueError: a missing or inconsistent field.
    """
    kwargs = generator_kwargs(model_config)
    if impl is not None:
        kwargs["op_impl"] = impl
    generator = GFLAGenerator(dtype=dtype, name="generator", **kwargs)
    generator.build()
    return generator


def build_discriminator(model_config, dtype=None):
    """Builds the GFLA discriminator described by ``config.model``.

    Args:
      model_config: ``config.model`` with ``image_height``, ``image_width``, ``dis_ndf``,
        ``dis_max_channels`` and ``dis_layers``.
      dtype: optional Keras dtype policy; default the global one.

    Returns:
      A built ``Discriminator``.
    """
    discriminator = Discriminator(
        image_height=_field(model_config, "image_height"),
        image_width=_field(model_config, "image_width"),
        ndf=_field(model_config, "dis_ndf"),
        max_channels=_field(model_config, "dis_max_channels"),
        layers=_field(model_config, "dis_layers"),
        dtype=dtype,
        name="discriminator",
    )
    discriminator.build()
    return discriminator


def clone_with_impl(generator, impl):
    """Returns a new generator with ``generator``'s weights and another op implementation.

    Args:
      generator: a built ``GFLAGenerator``.
      impl: "auto", "custom" or "reference".

    Returns:
      A built ``GFLAGenerator`` with ``op_impl=impl`` and the same weights.
    """
    if not isinstance(generator, GFLAGenerator):
        raise TypeError(f"generator must be a GFLAGenerator, got {type(generator).__name__}")
    config = generator.get_config()
    config["op_impl"] = impl
    clone = GFLAGenerator.from_config(config)
    clone.build()
    clone.set_weights(generator.get_weights())
    return clone


def count_params(model):
    """Number of trainable and non-trainable weights, excluding spectral-norm u/v vectors."""
    return int(
        sum(
            keras.ops.size(w)
            for w in model.weights
            if not w.path.endswith(("vector_u", "vector_v"))
        )
    )


__all__ = [
    "Discriminator",
    "FlowEstimator",
    "GFLAGenerator",
    "build_discriminator",
    "build_generator",
    "clone_with_impl",
    "count_params",
    "generator_kwargs",
]
