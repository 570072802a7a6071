"""SavedModel export: TF Serving layout, stock-op graph, bad requests, versions, atomicity."""

import json
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
