"""The GFLA networks as Keras 3 models, and builders from ``config.model``.

``build_generator(model_config)`` returns a built ``GFLAGenerator`` (flow estimator F
inside, as ``generator.flow_estimator``); ``build_discriminator(model_config)`` a built
``Discriminator``; ``clone_with_impl(generator, impl)`` a copy with the same weights whose
local attention runs another op implementation (export uses "reference").
"""

import keras

from gfla_tf.models.discriminator import Discriminator
from gfla_tf.models.flow_estimator import FlowEstimator
from gfla_tf.models.generator import GFLAGenerator

GENERATOR_FIELDS = (
    "image_height",
    "image_width",
    "num_keypoints",
    "flow_ngf",
    "flow_max_channels",
    "flow_layers",
    "renderer_ngf",
    "renderer_max_channels",
    "renderer_layers",
    "renderer_blocks",
    "attention_layers",
    "kernel_sizes",
    "attention_hidden",
)


def _field(model_config, name):
    try:
        return model_config[name]
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"model config is missing the field {name!r}") from err


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
    kwargs = {name: _field(model_config, name) for name in GENERATOR_FIELDS}
    # Optional field: configs written before it existed keep the reference's behaviour.
    kwargs["normalize_source_image"] = bool(
        model_config.get("normalize_source_image", True) if hasattr(model_config, "get") else True
    )
    kwargs["attention_layers"] = tuple(kwargs["attention_layers"])
    kwargs["kernel_sizes"] = tuple(kwargs["kernel_sizes"])
    if impl is None:
        impl = model_config.get("op_impl", "auto") if hasattr(model_config, "get") else "auto"
    generator = GFLAGenerator(op_impl=impl, dtype=dtype, name="generator", **kwargs)
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
]
