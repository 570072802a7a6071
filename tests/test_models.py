"""Tests of gfla_tf.models: the contract, parameter counts, serialisation, precision, impls."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import models, ops
from gfla_tf.configs import deepfashion, market

RNG = np.random.default_rng(0)


def make_inputs(model_config, batch=2):
    h, w = model_config.image_height, model_config.image_width
    return {
        "source_image": RNG.uniform(-1, 1, (batch, h, w, 3)).astype("float32"),
        "source_pose": RNG.random((batch, h, w, 18)).astype("float32"),
        "target_pose": RNG.random((batch, h, w, 18)).astype("float32"),
    }


def full_size_model(config_module, kind):
    """The full-size model with a cheap initialiser (only shapes matter here)."""
    cfg = config_module.get_config().model
    if kind == "generator":
        fields = {name: cfg[name] for name in models.GENERATOR_FIELDS}
        model = models.GFLAGenerator(kernel_initializer="zeros", **fields)
    else:
        model = models.Discriminator(
            cfg.image_height,
            cfg.image_width,
            cfg.dis_ndf,
            cfg.dis_max_channels,
            cfg.dis_layers,
            kernel_initializer="zeros",
        )
    model.build()
    return model


@pytest.mark.parametrize(
    "config_module, generator_count, flow_count, discriminator_count",
    [(deepfashion, 14_047_395, 6_608_212, 664_577), (market, 12_926_471, 6_604_753, 238_209)],
)
def test_parameter_counts_match_the_reference(
    config_module, generator_count, flow_count, discriminator_count
):
    generator = full_size_model(config_module, "generator")
    assert models.count_params(generator) == generator_count
    assert models.count_params(generator.flow_estimator) == flow_count
    assert models.count_params(full_size_model(config_module, "discriminator")) == (
        discriminator_count
    )


@pytest.fixture(scope="module")
def test_generator():
    return models.build_generator(deepfashion.get_config("test").model, impl="reference")


@pytest.mark.parametrize("config_module", [deepfashion, market])
def test_generator_contract(config_module):
    cfg = config_module.get_config("test").model
    generator = models.build_generator(cfg, impl="reference")
    out = generator(make_inputs(cfg), training=False)
    h, w = cfg.image_height, cfg.image_width
    assert out["image"].shape == (2, h, w, 3) and out["image"].dtype == tf.float32
    assert generator.attention_scales == [2**a for a in cfg.attention_layers]
    assert generator.kernel_sizes == list(cfg.kernel_sizes)
    assert len(out["flows"]) == len(out["masks"]) == len(cfg.kernel_sizes)
    for scale, flow, mask in zip(generator.attention_scales, out["flows"], out["masks"]):
        assert flow.shape == (2, h // scale, w // scale, 2)
        assert mask.shape == (2, h // scale, w // scale, 1)
        # Orthogonal gain-0.02 init and zero biases: flow ~0, mask ~0.5.
        assert np.abs(flow).max() < 1e-2
        np.testing.assert_allclose(np.asarray(mask), 0.5, atol=1e-2)
    assert np.abs(np.asarray(out["image"])).max() <= 1.0
    f_out = generator.flow_estimator(make_inputs(cfg))
    assert [f.shape for f in f_out["flows"]] == [f.shape for f in out["flows"]]


def test_discriminator_contract_and_power_iteration():
    cfg = deepfashion.get_config("test").model
    discriminator = models.build_discriminator(cfg)
    images = make_inputs(cfg)["source_image"]
    u0 = np.asarray(discriminator.blocks[0].conv1.vector_u).copy()
    out = discriminator(images)
    assert out.shape == (2, cfg.image_height // 16, cfg.image_width // 16, 1)
    np.testing.assert_array_equal(np.asarray(discriminator.blocks[0].conv1.vector_u), u0)
    discriminator(images, training=True)
    assert not np.array_equal(np.asarray(discriminator.blocks[0].conv1.vector_u), u0)


def test_generator_rejects_bad_inputs(test_generator):
    with pytest.raises(ValueError, match="target_pose"):
        test_generator({"source_image": np.zeros((1, 32, 32, 3)), "source_pose": None})
    with pytest.raises(ValueError, match="divisible"):
        models.GFLAGenerator(image_height=48, image_width=32)
    with pytest.raises(ValueError, match="op_impl"):
        models.GFLAGenerator(op_impl="fast")


def test_keras_save_and_reload(tmp_path, test_generator):
    cfg = deepfashion.get_config("test").model
    inputs = make_inputs(cfg)
    discriminator = models.build_discriminator(cfg)
    discriminator(
        inputs["target_image"] if "target_image" in inputs else inputs["source_image"],
        training=True,
    )
    for model, x in ((test_generator, inputs), (discriminator, inputs["source_image"])):
        path = os.path.join(str(tmp_path), model.name + ".keras")
        model.save(path)
        reloaded = keras.models.load_model(path)
        assert reloaded.get_config() == model.get_config()
        want, got = model(x), reloaded(x)
        for w, g in zip(tf.nest.flatten(want), tf.nest.flatten(got)):
            np.testing.assert_array_equal(np.asarray(w), np.asarray(g))


def test_clone_with_impl_and_jit(test_generator):
    cfg = deepfashion.get_config("test").model
    inputs = make_inputs(cfg)
    want = test_generator(inputs)
    clone = models.clone_with_impl(test_generator, "reference")
    np.testing.assert_array_equal(np.asarray(clone(inputs)["image"]), np.asarray(want["image"]))
    assert not clone.uses_custom_op
    if ops.library_available():
        custom = models.clone_with_impl(test_generator, "custom")
        assert custom.uses_custom_op and custom.jit_compile is False
        got = custom(inputs)
        for w, g in zip(tf.nest.flatten(want), tf.nest.flatten(got)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy, test_generator):
    cfg = deepfashion.get_config("test").model
    inputs = make_inputs(cfg)
    want = test_generator(inputs)
    mixed = models.build_generator(cfg, impl="reference", dtype=policy)
    mixed.set_weights(test_generator.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)
    got = mixed(inputs)
    assert got["image"].dtype == tf.float32 and got["flows"][0].dtype == tf.float32
    np.testing.assert_allclose(np.asarray(got["image"]), np.asarray(want["image"]), atol=2e-2)
    discriminator = models.build_discriminator(cfg, dtype=policy)
    assert discriminator(inputs["source_image"], training=True).dtype == tf.float32


def test_gradients_reach_every_generator_weight(test_generator):
    cfg = deepfashion.get_config("test").model
    inputs = make_inputs(cfg)
    target = RNG.uniform(-1, 1, (2, cfg.image_height, cfg.image_width, 3)).astype("float32")
    with tf.GradientTape() as tape:
        out = test_generator(inputs, training=True)
        loss = tf.reduce_mean(tf.abs(out["image"] - target))
    grads = tape.gradient(loss, test_generator.trainable_weights)
    missing = [w.path for w, g in zip(test_generator.trainable_weights, grads) if g is None]
    assert not missing
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_source_image_normalisation_can_be_dropped(tmp_path, test_generator):
    cfg = deepfashion.get_config("test").model
    cfg.normalize_source_image = False
    generator = models.build_generator(cfg, impl="reference")
    # Only the first source-encoder block loses its input norm (gamma and beta, 3 each).
    assert models.count_params(test_generator) - models.count_params(generator) == 6
    assert generator.source_encoders[0].norm1 is None
    assert generator.source_encoders[1].norm1 is not None
    assert generator.target_encoders[0].norm1 is not None
    inputs = make_inputs(cfg)
    path = os.path.join(str(tmp_path), "g.keras")
    generator.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.get_config() == generator.get_config()
    assert not reloaded.get_config()["normalize_source_image"]
    np.testing.assert_array_equal(
        np.asarray(generator(inputs)["image"]), np.asarray(reloaded(inputs)["image"])
    )
    # The image's absolute colour now reaches the renderer: a brightness shift of the source
    # changes the output, where the reference's normalisation would largely remove it.
    shifted = dict(inputs, source_image=inputs["source_image"] * 0.5 + 0.3)
    assert np.abs(generator(shifted)["image"] - generator(inputs)["image"]).max() > 0
