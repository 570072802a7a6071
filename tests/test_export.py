"""SavedModel export: TF Serving layout, stock-op graph, bad requests, versions, atomicity."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import export
from gfla_tf.cli import export as export_cli
from gfla_tf.export import saved_model as saved_model_lib
from gfla_tf.export import testing

SIZE = (32, 32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random tiny generator saved as .keras and exported through the CLI."""
    root = tmp_path_factory.mktemp("export")
    generator = testing.tiny_generator(seed=1)
    keras_path = str(root / "generator.keras")
    generator.save(keras_path)
    base = str(root / "models" / "gfla")
    assert export_cli.main(["gfla export", "--model", keras_path, "--output", base]) == 0
    images, source, target = testing.random_request(2, SIZE, seed=3)
    # Eager: the Keras model's own output, without paying for a trace.
    expected = export.KerasPredictor(generator, traced=False).predict(images, source, target)
    return {
        "root": root,
        "keras": keras_path,
        "base": base,
        "version_dir": os.path.join(base, "1"),
        "generator": generator,
        "request": (images, source, target),
        "expected": expected,
    }


@pytest.fixture(scope="module")
def loaded(exported):
    """The export loaded once with tf.saved_model.load."""
    return tf.saved_model.load(exported["version_dir"])


def test_layout_and_metadata(exported):
    base = exported["base"]
    assert export.list_versions(base) == [1]
    assert sorted(os.listdir(base)) == ["1"], "no temporary directory may be left behind"
    assert tf.saved_model.contains_saved_model(exported["version_dir"])
    metadata = export.read_metadata(exported["version_dir"])
    assert (metadata["image_height"], metadata["image_width"]) == SIZE
    assert metadata["sigma"] == 6.0
    assert metadata["attention_scales"] == [8, 4]


def test_signatures(loaded):
    assert set(loaded.signatures) == {"serving_default", "heatmaps"}
    serving = loaded.signatures["serving_default"]
    inputs = serving.structured_input_signature[1]
    assert inputs["source_image"].dtype == tf.uint8
    assert inputs["source_keypoints"].dtype == tf.float32
    outputs = serving.structured_outputs
    assert set(outputs) == {"image", "flow_0", "flow_1", "mask_0", "mask_1"}
    assert outputs["image"].dtype == tf.uint8
    assert outputs["flow_0"].shape.as_list() == [None, 4, 4, 2]
    assert outputs["mask_1"].shape.as_list() == [None, 8, 8, 1]
    heatmaps = loaded.signatures["heatmaps"].structured_input_signature[1]
    assert heatmaps["source_pose"].shape.as_list() == [None, 32, 32, 18]


def test_heatmap_signature_matches_keras(exported, loaded):
    generator = exported["generator"]
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    source_pose = rng.uniform(0, 1, (1, 32, 32, 18)).astype(np.float32)
    target_pose = rng.uniform(0, 1, (1, 32, 32, 18)).astype(np.float32)
    want = generator(
        {"source_image": image, "source_pose": source_pose, "target_pose": target_pose}
    )
    got = loaded.signatures["heatmaps"](
        source_image=tf.constant(image),
        source_pose=tf.constant(source_pose),
        target_pose=tf.constant(target_pose),
    )
    np.testing.assert_allclose(got["image"], want["image"], atol=1e-5)
    np.testing.assert_allclose(got["flow_1"], want["flows"][1], atol=1e-5)


# Runs in a process that must never import gfla_tf: a meta-path hook makes any attempt
# fail loudly, and the end state of sys.modules is checked too. It loads the export the
# TF2 way and the TF1-session way TF Serving uses, and sends bad requests to the latter
# (not a wrong dtype: the Python session casts feeds, unlike TF Serving's C++ session;
# test_bad_requests_in_process covers dtypes).
_FRESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "gfla_tf" or name.startswith("gfla_tf."):
                raise ImportError("gfla_tf must not be imported here")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import tensorflow as tf
    export_dir, request, out = sys.argv[1:4]
    req = dict(np.load(request))
    fn = tf.saved_model.load(export_dir).signatures["serving_default"]
    eager = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in req.items()}).items()}
    report = {"errors": {}}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        sig = meta.signature_def["serving_default"]
        def run(inputs):
            feed = {sig.inputs[k].name: v for k, v in inputs.items()}
            fetch = {k: t.name for k, t in sig.outputs.items()}
            return sess.run(fetch, feed)
        session = run(req)
        bad = {
            "rank": dict(req, source_image=req["source_image"][0]),
            "size": dict(req, source_image=req["source_image"][:, :31]),
            "batch": dict(req, target_keypoints=req["target_keypoints"][:1]),
            "keypoints": dict(req, source_keypoints=req["source_keypoints"][:, :17]),
        }
        for name, inputs in bad.items():
            try:
                run(inputs)
                report["errors"][name] = None
            except tf.errors.OpError as err:
                report["errors"][name] = [type(err).__name__, err.message]
            except (TypeError, ValueError) as err:
                report["errors"][name] = [type(err).__name__, str(err)]
    np.savez(out, **{"eager_" + k: v for k, v in eager.items()},
             **{"session_" + k: v for k, v in session.items()})
    report["gfla_tf_imported"] = any(m.split(".")[0] == "gfla_tf" for m in sys.modules)
    print("REPORT" + json.dumps(report))
    """
)


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _write_request(path, request):
    images, source, target = request
    np.savez(path, source_image=images, source_keypoints=source, target_keypoints=target)


@pytest.mark.slow
def test_fresh_process_without_gfla_tf(exported, tmp_path):
    request = str(tmp_path / "request.npz")
    _write_request(request, exported["request"])
    out = str(tmp_path / "out.npz")
    script = tmp_path / "fresh.py"
    script.write_text(_FRESH_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), exported["version_dir"], request, out],
        cwd=str(tmp_path),
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT", 1)[1])
    assert report["gfla_tf_imported"] is False
    results = np.load(out)
    expected = exported["expected"]
    for prefix in ("eager_", "session_"):
        np.testing.assert_array_equal(results[prefix + "image"], expected["image"])
        for i in range(2):
            np.testing.assert_allclose(
                results[f"{prefix}flow_{i}"], expected["flows"][i], atol=1e-5
            )
            np.testing.assert_allclose(
                results[f"{prefix}mask_{i}"], expected["masks"][i], atol=1e-6
            )
    errors = report["errors"]
    for name, needle in (
        ("rank", "source_image must have shape [batch, 32, 32, 3]"),
        ("size", "this model takes 32x32 images"),
        ("batch", "target_keypoints must have the same batch size as source_image"),
        ("keypoints", "source_keypoints must have shape [batch, 18, 2]"),
    ):
        assert errors[name] is not None, name
        kind, message = errors[name]
        assert kind == "InvalidArgumentError", (name, kind, message)
        assert needle in message, (name, message)


@pytest.mark.slow
def test_saved_model_cli_run(exported, tmp_path):
    images, source, target = exported["request"]
    for name, value in (("img", images), ("src", source), ("tgt", target)):
        np.save(tmp_path / f"{name}.npy", value)
    outdir = tmp_path / "cli_out"
    inputs = (
        f"source_image={tmp_path / 'img.npy'};source_keypoints={tmp_path / 'src.npy'};"
        f"target_keypoints={tmp_path / 'tgt.npy'}"
    )
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    proc = subprocess.run(
        cli
        + [
            "run",
            "--dir",
            exported["version_dir"],
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            inputs,
            "--outdir",
            str(outdir),
        ],
        cwd=str(tmp_path),
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = exported["expected"]
    np.testing.assert_array_equal(np.load(outdir / "image.npy"), expected["image"])
    np.testing.assert_allclose(np.load(outdir / "flow_1.npy"), expected["flows"][1], atol=1e-5)


def test_bad_requests_in_process(exported, loaded):
    fn = loaded.signatures["serving_default"]
    images, source, target = exported["request"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"this model takes 32x32 images"):
        fn(
            source_image=tf.constant(np.zeros((1, 64, 64, 3), np.uint8)),
            source_keypoints=tf.constant(source[:1]),
            target_keypoints=tf.constant(target[:1]),
        )
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        fn(
            source_image=tf.constant(images.astype(np.float32)),
            source_keypoints=tf.constant(source),
            target_keypoints=tf.constant(target),
        )


def test_refuses_to_overwrite(exported, capsys):
    base = exported["base"]
    before = os.path.getmtime(os.path.join(base, "1", "saved_model.pb"))
    with pytest.raises(FileExistsError, match="refusing to overwrite version 1"):
        export.export_saved_model(exported["generator"], base, version=1)
    status = export_cli.main(
        ["gfla export", "--model", exported["keras"], "--output", base, "--version", "1"]
    )
    assert status == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(base, "1", "saved_model.pb")) == before
    assert sorted(os.listdir(base)) == ["1"]


def test_next_version(tmp_path):
    assert saved_model_lib.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "3", ".tmp-export-x", "notes", "10x"):
        (tmp_path / name).mkdir()
    assert saved_model_lib.next_version(str(tmp_path)) == 4
    with pytest.raises(ValueError, match="positive integer"):
        export.export_saved_model(object(), str(tmp_path), version=0)


def test_failed_export_leaves_no_version(exported, tmp_path, monkeypatch):
    base = tmp_path / "models"

    def broken_write(generator, path, image_size=None, sigma=6.0):
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(saved_model_lib, "write_saved_model", broken_write)
    with pytest.raises(OSError, match="simulated"):
        export.export_saved_model(exported["generator"], str(base), version=5)
    assert os.listdir(base) == []
    assert export.list_versions(str(base)) == []


def test_resolve_base_directory(exported):
    assert export.resolve_saved_model_dir(exported["base"]) == exported["version_dir"]
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        export.resolve_saved_model_dir(str(exported["root"]))


@pytest.mark.parametrize(
    "prelude",
    [
        # import gfla_tf itself stays cheap: TensorFlow is not loaded until Keras is.
        "import gfla_tf; assert 'tensorflow' not in sys.modules",
        # A gfla_tf module that imports Keras on its way in (no circular import).
        "import gfla_tf.layers",
        "import tensorflow; import gfla_tf",
    ],
)
def test_import_gfla_tf_is_enough_to_load_keras(exported, tmp_path, prelude):
    """``import gfla_tf`` registers every serialisable class; no submodule import needed."""
    script = (
        f"import sys\n{prelude}\nimport keras\n"
        "model = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "print('LOADED', type(model).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, exported["keras"]],
        cwd=str(tmp_path),
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED GFLAGenerator" in proc.stdout


def _request(exported):
    images, source, target = exported["request"]
    return images, source.copy(), target.copy()


def test_non_finite_keypoints_rejected_everywhere(exported, loaded):
    images, source, target = _request(exported)
    source[1, 4] = [np.nan, 10.0]
    predictor = export.KerasPredictor(exported["generator"], traced=False)
    with pytest.raises(ValueError, match=r"source_keypoints\[1, 4\] \(keypoint 4 \(Rwri\)\)"):
        predictor.predict(images, source, target)
    fn = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"source_keypoints must be finite"):
        fn(source_image=images, source_keypoints=source, target_keypoints=target)
    source[1, 4] = [3.0, np.inf]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"NaN or infinite at"):
        fn(source_image=images, source_keypoints=target, target_keypoints=source)
    heatmaps = loaded.signatures["heatmaps"]
    pose = np.zeros((1, 32, 32, 18), np.float32)
    bad = pose.copy()
    bad[0, 5, 6, 7] = np.nan
    image = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"target_pose must hold finite"):
        heatmaps(source_image=image, source_pose=pose, target_pose=bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"source_image must hold finite"):
        heatmaps(source_image=image + np.inf, source_pose=pose, target_pose=pose)


def test_far_keypoints_warn_and_count_as_missing(exported, caplog):
    images, source, target = _request(exported)
    predictor = export.KerasPredictor(exported["generator"], traced=False)
    far = target.copy()
    far[0, 2] = [1e6, 5.0]
    missing = target.copy()
    missing[0, 2] = -1.0
    with caplog.at_level(logging.WARNING, logger="gfla_tf.export.predictor"):
        got = predictor.predict(images, source, far)
    assert "target_keypoints[0, 2] (keypoint 2 (Rsho))" in caplog.text
    assert "treats it as missing" in caplog.text
    want = predictor.predict(images, source, missing)
    np.testing.assert_array_equal(got["image"], want["image"])


def test_empty_batch(exported, loaded):
    images, source, target = _request(exported)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one image; got batch"):
        loaded.signatures["serving_default"](
            source_image=images[:0], source_keypoints=source[:0], target_keypoints=target[:0]
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one image; got batch"):
        loaded.signatures["heatmaps"](
            source_image=np.zeros((0, 32, 32, 3), np.float32),
            source_pose=np.zeros((0, 32, 32, 18), np.float32),
            target_pose=np.zeros((0, 32, 32, 18), np.float32),
        )
    with pytest.raises(ValueError, match="at least one image"):
        export.load_predictor(exported["base"]).predict(images[:0], source[:0], target[:0])


def _write_config(workdir, sigma, size=SIZE):
    """A training config.json as gfla train writes it (only the fields export reads)."""
    from gfla_tf.configs import deepfashion

    config = deepfashion.get_config("test")
    config.data.sigma = sigma
    config.model.image_height, config.model.image_width = size
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def test_sigma_and_size_come_from_the_training_config(exported, tmp_path, caplog):
    workdir = tmp_path / "run"
    workdir.mkdir()
    exported["generator"].save(str(workdir / "generator.keras"))
    _write_config(workdir, sigma=3.0)
    base = str(tmp_path / "models")
    with caplog.at_level(logging.INFO):
        caplog.clear()
        assert export_cli.main(["gfla export", "--model", str(workdir), "--output", base]) == 0
    assert "exported SavedModel version 1" in caplog.text  # INFO lines are captured...
    assert "contains input name(s)" not in caplog.text  # ...but not absl's rename notice
    version = os.path.join(base, "1")
    assert export.read_metadata(version)["sigma"] == 3.0
    images, source, target = exported["request"]
    saved_predictor = export.load_predictor(base)
    got = saved_predictor.predict(images, source, target)
    keras_predictor = export.load_predictor(str(workdir / "generator.keras"), traced=False)
    assert (saved_predictor.format, keras_predictor.format) == ("saved_model", "keras")
    assert keras_predictor.sigma == 3.0
    want = keras_predictor.predict(images, source, target)
    np.testing.assert_array_equal(got["image"], want["image"])
    default = export.KerasPredictor(exported["generator"], traced=False).predict(
        images, source, target
    )
    assert np.any(default["image"] != want["image"]), "sigma 3 and 6 must differ"
    # An explicit sigma or a size that contradicts the config is an error, not a guess.
    with pytest.raises(ValueError, match=r"contradicts the training config.*data.sigma = 3"):
        export.export_saved_model(str(workdir), base, sigma=6.0)
    _write_config(workdir, sigma=3.0, size=(64, 64))
    with pytest.raises(ValueError, match="takes 32x32 images .* says 64x64"):
        export.export_saved_model(str(workdir / "generator.keras"), base)
    assert export.list_versions(base) == [1]


def test_export_permissions_follow_umask(exported):
    version = exported["version_dir"]
    assert os.stat(version).st_mode & 0o777 == 0o777 & ~_umask()
    assert os.stat(os.path.join(version, "assets.extra")).st_mode & 0o777 == 0o777 & ~_umask()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_read_only_output_folder(exported, tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    real_mkdtemp, real_mkstemp = tempfile.mkdtemp, tempfile.mkstemp

    def refuse(real):
        # As root the chmod does not stop writes: refuse them as the kernel would.
        def wrapper(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(read_only)):
                raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/.tmp-x")
            return real(*args, dir=dir, **kwargs)

        return wrapper

    monkeypatch.setattr(tempfile, "mkdtemp", refuse(real_mkdtemp))
    monkeypatch.setattr(tempfile, "mkstemp", refuse(real_mkstemp))
    try:
        status = export_cli.main(
            ["gfla export", "--model", exported["keras"], "--output", str(read_only / "gfla")]
        )
        err = capsys.readouterr().err
        assert status == 1
        assert len(err.strip().splitlines()) == 1, err
        assert "cannot write the export into" in err and "Permission denied" in err
        status = export_cli.main(
            [
                "gfla export",
                "--format",
                "tflite",
                "--model",
                exported["base"],
                "--output",
                str(read_only / "gfla.tflite"),
            ]
        )
        err = capsys.readouterr().err
        assert status == 1
        assert len(err.strip().splitlines()) == 1, err
        assert "cannot write" in err and "Permission denied" in err
    finally:
        read_only.chmod(0o755)
    # (As root the base directory itself can be created; nothing may be written into it.)
    assert [files for _, _, files in os.walk(read_only) if files] == []
    assert export.list_versions(str(read_only / "gfla")) == []


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_keras_file(exported, tmp_path, damage):
    path = tmp_path / "broken.keras"
    data = open(exported["keras"], "rb").read()
    path.write_bytes(os.urandom(4096) if damage == "random" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid .keras file") as info:
        export.load_generator(str(path))
    assert "File not found" not in str(info.value)
