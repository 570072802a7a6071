"""Tests of the checkpoint converter against a NumPy implementation of the authors' networks.

The NumPy forward passes below follow the PyTorch module structure of the reference code
key by key (the state dict is in PyTorch layout); the Keras models filled by
``convert_checkpoint`` must reproduce them. The key/shape lists of the published
checkpoints are in tests/data (copied from the reference checkpoint listings).
"""

import os

import layer_test_utils as ltu
import numpy as np
import pytest

from gfla_tf import convert, models
from gfla_tf.cli import convert as convert_cli
from gfla_tf.configs import deepfashion, market

DATA = os.path.join(os.path.dirname(__file__), "data")


def read_key_list(name):
    shapes = {}
    with open(os.path.join(DATA, name)) as f:
        for line in f:
            key, shape = line.strip().split(" ", 1)
            shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


def random_state(shapes, seed=0, scale=0.15):
    """A random state dict with the given shapes (duplicated convs equal, gammas ~1)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        value = rng.standard_normal(shape) * scale
        if key.endswith("weight") and len(shape) == 1:  # InstanceNorm gamma
            value = value + 1.0
        state[key] = value.astype("float32")
    for key in state:
        if ".model.2." in key and ("jump" in key or "outconv" in key):
            state[key] = state[key.replace(".model.2.", ".conv1.")]
    return state


# --- NumPy forward of the authors' modules (NCHW, PyTorch state-dict keys) ----------------


def _in(sd, p, x):
    return ltu.np_instance_norm(x, sd[p + ".weight"], sd[p + ".bias"])


def _conv(sd, p, x, stride=1, padding=0):
    return ltu.np_conv2d(x, sd[p + ".weight"], sd[p + ".bias"], stride, padding)


def _deconv(sd, p, x):
    return ltu.np_conv_transpose2d(x, sd[p + ".weight"], sd[p + ".bias"], 2, 1, 1)


lrelu = ltu.np_leaky_relu


def encoder_block(sd, p, x):
    x = _conv(sd, p + ".model.2", lrelu(_in(sd, p + ".model.0", x)), 2, 1)
    return _conv(sd, p + ".model.5", lrelu(_in(sd, p + ".model.3", x)), 1, 1)


def res_block(sd, p, x):
    h = _conv(sd, p + ".model.2", lrelu(_in(sd, p + ".model.0", x)), 1, 1)
    return x + _conv(sd, p + ".model.5", lrelu(_in(sd, p + ".model.3", h)), 1, 1)


def res_block_decoder(sd, p, x):
    h = _conv(sd, p + ".model.2", lrelu(_in(sd, p + ".model.0", x)), 1, 1)
    h = _deconv(sd, p + ".model.5", lrelu(_in(sd, p + ".model.3", h)))
    return h + _deconv(sd, p + ".shortcut.0", x)


def jump(sd, p, x):
    return _conv(sd, p + ".model.2", ltu.np_reflection_pad(lrelu(x), 1))


def output(sd, p, x):
    return np.tanh(_conv(sd, p + ".model.2", ltu.np_reflection_pad(lrelu(x), 1)))


def encoder(sd, prefix, x, n):
    feats = []
    for i in range(n):
        x = encoder_block(sd, prefix + ("block0" if i == 0 else f"encoder{i - 1}"), x)
        feats.append(x)
    return feats


def np_generator(sd, cfg, image, pose_s, pose_t):
    """PoseGenerator.forward of the reference: returns (image, flows, masks), NCHW."""
    feats = encoder(sd, "flow_net.", np.concatenate([image, pose_s, pose_t], 1), cfg.flow_layers)
    x = feats[-1]
    flows, masks = [], []
    for i in range(cfg.flow_layers - min(cfg.attention_layers)):
        x = res_block_decoder(sd, f"flow_net.decoder{i}", x)
        x = x + jump(sd, f"flow_net.jump{i}", feats[cfg.flow_layers - i - 2])
        if cfg.flow_layers - i - 1 in cfg.attention_layers:
            flows.append(_conv(sd, f"flow_net.output{i}", x, 1, 1))
            masks.append(1 / (1 + np.exp(-_conv(sd, f"flow_net.mask{i}.0", x, 1, 1))))
    n = cfg.renderer_layers
    source = encoder(sd, "source.", image, n)[::-1]
    x = encoder(sd, "target.", pose_t, n)[-1]
    counter = 0
    for i in range(n):
        if n - i in cfg.attention_layers:
            k = cfg.kernel_sizes[list(cfg.attention_layers).index(n - i)]
            p = f"target.attn{i}.fully_connect_layer"
            attn = ltu.np_extractor_attn(
                source[i], x, flows[counter], k,
                sd[p + ".0.weight"], sd[p + ".0.bias"], sd[p + ".2.weight"], sd[p + ".2.bias"],
            )  # fmt: skip
            x = x * (1 - masks[counter]) + attn * masks[counter]
            counter += 1
        for j in range(cfg.renderer_blocks - 1):
            x = res_block(sd, f"target.decoder{i}.0.model.{j}", x)
        x = res_block_decoder(sd, f"target.decoder{i}.{1 if cfg.renderer_blocks > 1 else 0}", x)
    return output(sd, "target.outconv", x), flows, masks


def np_discriminator(sd, cfg, image, training):
    """ResDiscriminator.forward with torch spectral norm; returns (scores, updated state)."""
    sd = dict(sd)

    def sn_conv(p, x, stride=1, padding=0):
        weight, u, v = ltu.np_spectral_norm(
            sd[p + ".weight_orig"].astype(np.float64),
            sd[p + ".weight_u"].astype(np.float64),
            sd[p + ".weight_v"].astype(np.float64),
            training,
        )
        sd[p + ".weight_u"], sd[p + ".weight_v"] = u, v
        return ltu.np_conv2d(x, weight, sd[p + ".bias"], stride, padding)

    x = image
    for i in range(cfg.dis_layers):
        p = "block0" if i == 0 else f"encoder{i - 1}"
        h = sn_conv(p + ".model.1", lrelu(x), 1, 1)
        h = sn_conv(p + ".model.3", lrelu(h), 2, 1)
        x = h + sn_conv(p + ".shortcut.1", ltu.np_avg_pool2(x))
    return sn_conv("conv", lrelu(x)), sd


# --- Tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, config_module", [("deepfashion", deepfashion), ("market", market)])
def test_model_keys_match_the_published_checkpoints(name, config_module):
    cfg = config_module.get_config().model
    fields = {f: cfg[f] for f in models.GENERATOR_FIELDS}
    generator = models.GFLAGenerator(kernel_initializer="zeros", **fields)
    generator.build()
    discriminator = models.Discriminator(
        cfg.image_height, cfg.image_width, cfg.dis_ndf, cfg.dis_max_channels, cfg.dis_layers,
        kernel_initializer="zeros",
    )  # fmt: skip
    discriminator.build()
    assert convert.expected_state_dict_shapes(generator) == read_key_list(f"generator-{name}.txt")
    assert convert.expected_state_dict_shapes(discriminator) == read_key_list(
        f"discriminator-{name}.txt"
    )


def _tiny(config_module):
    config = config_module.get_config("test")
    config.model.op_impl = "reference"
    generator = models.build_generator(config.model)
    discriminator = models.build_discriminator(config.model)
    g_state = random_state(convert.expected_state_dict_shapes(generator), seed=1)
    d_state = random_state(convert.expected_state_dict_shapes(discriminator), seed=2)
    for key in d_state:  # u, v are unit vectors in PyTorch
        if key.endswith(("weight_u", "weight_v")):
            d_state[key] = d_state[key] / np.linalg.norm(d_state[key])
    return config, g_state, d_state


@pytest.mark.parametrize("config_module", [deepfashion, market])
def test_converted_models_match_numpy_reference(config_module):
    config, g_state, d_state = _tiny(config_module)
    generator, discriminator = convert.convert_checkpoint(config, g_state, d_state)
    cfg = config.model
    # A float64 copy checks the structure exactly; the float32 model within 1e-4.
    generator64 = models.build_generator(cfg, dtype="float64")
    generator64.set_weights(generator.get_weights())
    rng = np.random.default_rng(3)
    h, w = cfg.image_height, cfg.image_width
    image = rng.uniform(-1, 1, (2, h, w, 3))
    pose_s = rng.random((2, h, w, 18))
    pose_t = rng.random((2, h, w, 18))
    want_image, want_flows, want_masks = np_generator(
        g_state, cfg, ltu.nchw(image), ltu.nchw(pose_s), ltu.nchw(pose_t)
    )
    # The flows must be large enough to exercise the bilinear sampling.
    assert max(np.abs(f).max() for f in want_flows) > 0.5
    for model, atol in ((generator64, 1e-5), (generator, 1e-4)):
        inputs = {"source_image": image, "source_pose": pose_s, "target_pose": pose_t}
        dtype = model.compute_dtype
        out = model({k: v.astype(dtype) for k, v in inputs.items()})
        for got, want in zip(out["flows"] + out["masks"], want_flows + want_masks):
            np.testing.assert_allclose(np.asarray(got), ltu.nhwc(want), atol=atol)
        np.testing.assert_allclose(np.asarray(out["image"]), ltu.nhwc(want_image), atol=atol)

    image = image.astype("float32")
    want, _ = np_discriminator(d_state, cfg, ltu.nchw(image), training=False)
    # Random u, v make sigma small and the scores large: compare relatively.
    np.testing.assert_allclose(
        np.asarray(discriminator(image)), ltu.nhwc(want), rtol=1e-4, atol=1e-4
    )
    want, new_state = np_discriminator(d_state, cfg, ltu.nchw(image), training=True)
    got = discriminator(image, training=True)
    np.testing.assert_allclose(np.asarray(got), ltu.nhwc(want), rtol=1e-4, atol=1e-4)
    exported = convert.export_state_dict(discriminator)
    for key in new_state:
        np.testing.assert_allclose(exported[key], new_state[key], atol=1e-5, err_msg=key)


def test_export_state_dict_round_trip():
    config, g_state, d_state = _tiny(deepfashion)
    generator, discriminator = convert.convert_checkpoint(config, g_state, d_state)
    for state, model in ((g_state, generator), (d_state, discriminator)):
        exported = convert.export_state_dict(model)
        assert list(exported) == list(convert.expected_state_dict_shapes(model))
        for key, value in state.items():
            np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_bad_state_dicts_are_rejected_by_name():
    config, g_state, d_state = _tiny(deepfashion)
    bad = dict(g_state)
    del bad["flow_net.output1.bias"]
    bad["flow_net.extra.weight"] = np.zeros(3, "float32")
    bad["target.outconv.conv1.weight"] = np.zeros((3, 4, 5, 5), "float32")
    with pytest.raises(ValueError) as err:
        convert.convert_checkpoint(config, bad)
    message = str(err.value)
    for key in ("flow_net.output1.bias", "flow_net.extra.weight", "target.outconv.conv1.weight"):
        assert key in message
    bad = dict(g_state)
    bad["flow_net.jump0.model.2.weight"] = bad["flow_net.jump0.model.2.weight"] + 1.0
    with pytest.raises(ValueError, match="flow_net.jump0.model.2.weight"):
        convert.convert_checkpoint(config, bad)
    bad = dict(d_state)
    bad["conv.weight_v"] = np.zeros(3, "float32")
    with pytest.raises(ValueError, match="conv.weight_v"):
        convert.convert_checkpoint(config, g_state, bad)
    # A DataParallel "module." prefix is accepted.
    prefixed = {"module." + k: v for k, v in g_state.items()}
    convert.convert_checkpoint(config, prefixed)


def test_cli_converts_and_writes_atomically(tmp_path):
    config, g_state, d_state = _tiny(deepfashion)
    g_path, d_path = str(tmp_path / "G.npz"), str(tmp_path / "D.npz")
    np.savez(g_path, **g_state)
    np.savez(d_path, **d_state)
    out = str(tmp_path / "out" / "model.keras")
    config_path = os.path.join(os.path.dirname(deepfashion.__file__), "deepfashion.py")
    # The same op implementation as ``want`` below, so outputs can be compared exactly.
    argv = ["gfla convert", "--config", config_path + ":test", "--generator", g_path]
    argv += ["--impl", "reference"]
    # A broken discriminator: nothing may be written.
    bad = dict(d_state)
    del bad["conv.bias"]
    np.savez(str(tmp_path / "bad.npz"), **bad)
    assert (
        convert_cli.main(argv + ["--discriminator", str(tmp_path / "bad.npz"), "--output", out])
        != 0
    )
    assert not os.path.exists(os.path.dirname(out)) or not os.listdir(os.path.dirname(out))

    assert convert_cli.main(argv + ["--discriminator", d_path, "--output", out]) == 0
    import keras

    generator = keras.models.load_model(out)
    discriminator = keras.models.load_model(convert_cli.discriminator_path(out))
    want, _ = convert.convert_checkpoint(config, g_state)
    rng = np.random.default_rng(0)
    inputs = {
        "source_image": rng.uniform(-1, 1, (1, 32, 32, 3)).astype("float32"),
        "source_pose": rng.random((1, 32, 32, 18)).astype("float32"),
        "target_pose": rng.random((1, 32, 32, 18)).astype("float32"),
    }
    np.testing.assert_allclose(
        np.asarray(generator(inputs)["image"]), np.asarray(want(inputs)["image"]), atol=1e-6
    )
    assert discriminator(inputs["source_image"]).shape == (1, 2, 2, 1)
    assert sorted(os.listdir(os.path.dirname(out))) == [
        "model.discriminator.keras",
        "model.keras",
    ]


def test_load_state_dict_errors(tmp_path):
    path = str(tmp_path / "x.npz")
    np.savez(path, a=np.ones(2))
    assert list(convert.load_state_dict(path)) == ["a"]
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="gfla-tf\\[convert\\]"):
            convert.load_state_dict(str(tmp_path / "G.pth"))


def test_torch_modules_match_converted_layers():
    """Optional: the same layers built from torch.nn primitives (skipped without torch)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    config, g_state, _ = _tiny(deepfashion)
    generator, _ = convert.convert_checkpoint(config, g_state)
    rng = np.random.default_rng(5)
    # ResBlockDecoder of the flow estimator, rebuilt from torch.nn primitives.
    p = "flow_net.decoder1"
    c_in = g_state[p + ".model.2.weight"].shape[1]
    c_hidden = g_state[p + ".model.2.weight"].shape[0]
    c_out = g_state[p + ".model.5.weight"].shape[1]
    model = nn.Sequential(
        nn.InstanceNorm2d(c_in, affine=True), nn.LeakyReLU(0.1),
        nn.Conv2d(c_in, c_hidden, 3, 1, 1), nn.InstanceNorm2d(c_hidden, affine=True),
        nn.LeakyReLU(0.1), nn.ConvTranspose2d(c_hidden, c_out, 3, 2, 1, 1),
    )  # fmt: skip
    shortcut = nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, 1)
    with torch.no_grad():
        for index, key in ((0, ".model.0"), (2, ".model.2"), (3, ".model.3"), (5, ".model.5")):
            model[index].weight.copy_(torch.from_numpy(g_state[p + key + ".weight"]))
            model[index].bias.copy_(torch.from_numpy(g_state[p + key + ".bias"]))
        shortcut.weight.copy_(torch.from_numpy(g_state[p + ".shortcut.0.weight"]))
        shortcut.bias.copy_(torch.from_numpy(g_state[p + ".shortcut.0.bias"]))
        x = rng.standard_normal((2, c_in, 3, 4)).astype("float32")
        want = (model(torch.from_numpy(x)) + shortcut(torch.from_numpy(x))).numpy()
    got = generator.flow_estimator.decoders[1](ltu.nhwc(x))
    np.testing.assert_allclose(np.asarray(got), ltu.nhwc(want), atol=1e-4)


# --- issue 11: bad inputs and outputs are one clear line, never a traceback ------------


def _cli_argv(tmp_path, generator):
    config_path = os.path.join(os.path.dirname(deepfashion.__file__), "deepfashion.py")
    return ["gfla convert", "--config", config_path + ":test", "--generator", str(generator)]


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gfla convert: "), lines
    for word in words:
        assert word in lines[0], lines
    return lines[0]


def test_truncated_npz_is_one_line(tmp_path, capsys):
    _, g_state, _ = _tiny(deepfashion)
    path = tmp_path / "G.npz"
    np.savez(path, **g_state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        convert.load_state_dict(path)
    out = tmp_path / "out" / "model.keras"
    assert convert_cli.main(_cli_argv(tmp_path, path) + ["--output", str(out)]) == 1
    _one_error_line(capsys, str(path), "truncated")
    assert not out.exists()


class _FakeTorch:
    """Stands in for torch: ``load`` fails the way it does on a truncated file."""

    @staticmethod
    def load(path, **kwargs):
        raise RuntimeError(
            "PytorchStreamReader failed reading zip archive: failed finding central directory\n"
            "more lines of C++ context"
        )


def test_truncated_pth_is_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "G.pth"
    path.write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setitem(__import__("sys").modules, "torch", _FakeTorch)
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        convert.load_state_dict(path)
    out = tmp_path / "model.keras"
    assert convert_cli.main(_cli_argv(tmp_path, path) + ["--output", str(out)]) == 1
    _one_error_line(capsys, str(path), "PytorchStreamReader")


def test_truncated_pth_with_real_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "G.pth"
    torch.save({"a.weight": torch.ones(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        convert.load_state_dict(path)


def test_nan_weights_are_refused_by_key(tmp_path, capsys):
    config, g_state, d_state = _tiny(deepfashion)
    bad = dict(g_state)
    bad["flow_net.output1.bias"] = np.full_like(bad["flow_net.output1.bias"], np.nan)
    with pytest.raises(ValueError, match="non-finite.*flow_net.output1.bias"):
        convert.convert_checkpoint(config, bad)
    bad_d = dict(d_state)
    bad_d["conv.weight_u"] = np.full_like(bad_d["conv.weight_u"], np.inf)
    with pytest.raises(ValueError, match="discriminator.*conv.weight_u"):
        convert.convert_checkpoint(config, g_state, bad_d)
    path = tmp_path / "G.npz"
    np.savez(path, **bad)
    out = tmp_path / "model.keras"
    assert convert_cli.main(_cli_argv(tmp_path, path) + ["--output", str(out)]) == 1
    _one_error_line(capsys, "flow_net.output1.bias", "NaN")
    assert not out.exists()


def test_unwritable_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    _, g_state, _ = _tiny(deepfashion)
    path = tmp_path / "G.npz"
    np.savez(path, **g_state)
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the folder refuse as a read-only one
        real = convert_cli.tempfile.TemporaryFile

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and os.path.abspath(dir) == str(folder):
                raise PermissionError(13, "Permission denied", str(folder))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(convert_cli.tempfile, "TemporaryFile", refuse)
    try:
        out = folder / "model.keras"
        assert convert_cli.main(_cli_argv(tmp_path, path) + ["--output", str(out)]) == 1
        _one_error_line(capsys, "cannot write", str(out), "Permission denied")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)
    # A file where the output folder should be.
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "model.keras"
    assert convert_cli.main(_cli_argv(tmp_path, path) + ["--output", str(out)]) == 1
    _one_error_line(capsys, "cannot write", str(out))
