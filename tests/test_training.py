"""Tests of gfla_tf.training in one process: stage-1 fit, checkpoints, restore, mirrored."""

import errno
import glob
import inspect
import json
import logging
import math
import os
import re
import shutil
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import training
from gfla_tf.configs import synthetic
from gfla_tf.data import visualize

SIZE = 32


def _random_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "source_image": rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32"),
        "target_image": rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32"),
        "source_pose": rng.uniform(0, 1, (n, SIZE, SIZE, 18)).astype("float32"),
        "target_pose": rng.uniform(0, 1, (n, SIZE, SIZE, 18)).astype("float32"),
    }


def _dataset_fn(input_context, global_batch):
    dataset = tf.data.Dataset.from_tensor_slices(_random_batch(8)).repeat()
    if input_context is not None:
        global_batch = input_context.get_per_replica_batch_size(global_batch)
    return dataset.batch(global_batch, drop_remainder=True)


def _config(**train):
    config = synthetic.get_config("test")
    # The paper's flow losses: the random batches of these tests have no ground-truth flow
    # to supervise with (the quickstart's replacement for the correctness loss).
    no_ground_truth = dict(flow_supervision=0.0, warp_correctness=0.0, mask_visibility=0.0)
    config.loss.stage1.update(dict(correctness=20.0, **no_ground_truth))
    config.loss.stage2.update(dict(correctness=5.0, person_l1=0.0, **no_ground_truth))
    config.train.update(dict(steps=2, steps_per_epoch=1, checkpoint_every=1, log_every=1))
    config.train.update(train)
    return config


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("stage1"))
    config = _config(keep_checkpoints=1, image_every=2)
    keras.utils.set_random_seed(0)
    result = training.train(config, workdir, strategy="default", verbose=0, dataset_fn=_dataset_fn)
    return config, workdir, result


def test_stage1_trains_flow_estimator_only_and_writes_outputs(stage1_run):
    config, workdir, result = stage1_run
    trainer = result.trainer
    assert int(trainer.optimizer.iterations.numpy()) == 2
    for name, values in result.history.history.items():
        assert all(math.isfinite(v) for v in values), name
    assert {"correctness", "regularization", "g_loss"} <= set(result.history.history)
    # Stage 1 updates F only: the renderer keeps its initial weights.
    keras.utils.set_random_seed(0)
    fresh = training.build_trainer(config)
    flow_vars = {v.path for v in trainer.generator.flow_estimator.trainable_variables}
    changed_flow = changed_other = 0
    for new, old in zip(trainer.generator.trainable_variables, fresh.generator.trainable_variables):
        differs = not np.allclose(new.numpy(), old.numpy())
        if new.path in flow_vars:
            changed_flow += differs
        else:
            changed_other += differs
    assert changed_flow > 0 and changed_other == 0

    assert training.load_config(workdir).train.stage == 1
    assert os.path.isfile(os.path.join(workdir, "config.txt"))
    ckpts = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    assert ckpts == ["ckpt-00000002"]  # keep_checkpoints=1, no temporary leftovers
    with open(os.path.join(workdir, "backup", "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 2
    events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    tags = {
        value.tag
        for path in events
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }
    assert {"loss/g_loss", "learning_rate/g", "throughput/steps_per_sec"} <= tags
    assert "samples/source|pose|generated|target|flow|mask" in tags
    assert os.path.isfile(os.path.join(workdir, "generator.weights.h5"))


def test_restore_and_stage2_initialisation(stage1_run):
    config, workdir, result = stage1_run
    restored = training.build_trainer(config)
    training.restore_trainer(restored, workdir)
    assert int(restored.optimizer.iterations.numpy()) == 2
    for a, b in zip(restored.generator.weights, result.trainer.generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    stage2 = config.copy_and_resolve_references()
    stage2.train.stage = 2
    trainer2 = training.build_trainer(stage2)
    training.load_flow_estimator(trainer2.generator, workdir, stage2.model)
    for a, b in zip(
        trainer2.generator.flow_estimator.weights, result.trainer.generator.flow_estimator.weights
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert trainer2.discriminator is not None
    assert set(trainer2.loss_weights) == {k for k, v in stage2.loss.stage2.items() if v}


def test_save_checkpoint_keeps_newest(stage1_run, tmp_path):
    _, _, result = stage1_run
    for step in (3, 1, 7):
        training.save_checkpoint(result.trainer, str(tmp_path), step, keep=2)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-00000003", "ckpt-00000007"]
    assert training.latest_checkpoint(str(tmp_path)).endswith("ckpt-00000007")


def test_mirrored_step_matches_single_device():
    """Global-batch loss scaling: a fit step on 2 replicas equals an eager 1-device step."""
    config = _config()
    batch = _random_batch(2, seed=3)
    reference = training.build_trainer(config)
    strategy = training.build_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = training.build_trainer(config)
    mirrored.set_weights(reference.get_weights())
    # Eager single-device step (no tracing): what the distributed step must reproduce.
    reference_logs = {k: float(v) for k, v in reference.train_step(batch).items()}
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(2)
    history = mirrored.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False).history
    for name, value in reference_logs.items():
        np.testing.assert_allclose(history[name][0], value, rtol=1e-4, err_msg=name)
    for a, b in zip(mirrored.generator.weights, reference.generator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-6)


class _StubOptimizer:
    iterations = tf.Variable(5)


def test_non_finite_loss_stops_with_message():
    callback = training.TerminateOnNonFiniteLoss()
    model = keras.Model()
    model.optimizer = _StubOptimizer()
    callback.set_model(model)
    callback.on_train_batch_end(0, {"l1": np.float32(0.5)})
    with pytest.raises(training.NonFiniteLossError, match="'style' is nan at step 5"):
        callback.on_train_batch_end(1, {"l1": np.float32(0.5), "style": np.float32("nan")})
    assert model.stop_training


def test_trainer_rejects_bad_arguments():
    config = _config()
    trainer = training.build_trainer(config)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        training.GFLATrainer(trainer.generator, None, trainer.vgg_extractor, stage=3)
    with pytest.raises(ValueError, match="discriminator"):
        training.GFLATrainer(trainer.generator, None, trainer.vgg_extractor, stage=2)
    with pytest.raises(ValueError, match="unknown loss_weights"):
        trainer.compile(g_optimizer=keras.optimizers.Adam(), loss_weights={"stlye": 1.0})
    with pytest.raises(ValueError, match="missing"):
        trainer.train_step({"source_image": tf.zeros([1, SIZE, SIZE, 3])})
    bad = _config(mixed_precision="float64")
    with pytest.raises(ValueError, match="mixed_precision"):
        training.train(bad, "unused", strategy="default", dataset_fn=_dataset_fn)


def test_mixed_float16_uses_loss_scaling():
    config = _config(mixed_precision="mixed_float16")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        trainer = training.build_trainer(config)
        logs = trainer.train_step(_random_batch(2))  # eager: no tracing needed
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(trainer.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.generator.flow_estimator.compute_dtype == "float16"
    assert all(math.isfinite(float(v)) for v in logs.values())
    assert int(trainer.g_optimizer.iterations.numpy()) == 1


def test_sample_grid_colours_flow_with_flow_to_color(stage1_run, monkeypatch):
    _, _, result = stage1_run
    from gfla_tf.training import callbacks

    seen = []

    def spy(flow, max_flow=None):
        seen.append(np.shape(flow))
        return visualize.flow_to_color(flow, max_flow)

    monkeypatch.setattr(callbacks, "flow_to_color", spy)
    grid = training.sample_grid(result.generator, _random_batch(2), max_rows=2)
    assert grid.shape == (2 * SIZE, 6 * SIZE, 3) and grid.dtype == np.uint8
    assert len(seen) == 1 and seen[0][-1] == 2
    assert not hasattr(training, "flow_to_rgb")  # the one colouring is data.visualize's


def _supervised_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    batch = _random_batch(n, seed)
    batch["flow"] = rng.uniform(-3, 3, (n, SIZE, SIZE, 2)).astype("float32")
    batch["visibility"] = (rng.uniform(0, 1, (n, SIZE, SIZE, 1)) > 0.3).astype("float32")
    return batch


def test_no_vgg_when_no_loss_reads_it():
    config = _config()
    config.loss.stage1.update(dict(correctness=0.0, flow_supervision=1.0))
    assert training.required_vgg_layers(1, [8, 4], dict(config.loss.stage1)) == ()
    trainer = training.build_trainer(config)
    assert trainer.vgg_extractor is None
    logs = trainer.train_step(_supervised_batch(2))
    assert set(logs) == {"regularization", "flow_supervision", "g_loss"}
    trainer.compile(g_optimizer=keras.optimizers.Adam(), loss_weights={"correctness": 1.0})
    with pytest.raises(ValueError, match="need VGG features"):
        trainer.train_step(_supervised_batch(2))


def test_no_discriminator_step_without_adversarial_term():
    config = _config(stage=2)
    config.loss.stage2.adversarial = 0.0
    trainer = training.build_trainer(config)
    before = [np.array(w) for w in trainer.discriminator.weights]
    logs = trainer.train_step(_random_batch(2))
    assert "d_loss" not in logs and "adversarial" not in logs
    after = [np.array(w) for w in trainer.discriminator.weights]
    assert all(np.array_equal(b, a) for b, a in zip(before, after))
    assert int(trainer.g_optimizer.iterations.numpy()) == 1


def test_linear_decay_tail_schedule():
    schedule = training.LinearDecayTail(1e-3, total_steps=100, decay_fraction=0.25)
    rates = [float(schedule(step)) for step in (0, 75, 80, 100, 150)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 8e-4, 0.0, 0.0], atol=1e-9)
    clone = training.LinearDecayTail.from_config(schedule.get_config())
    assert float(clone(90)) == pytest.approx(float(schedule(90)))
    for kwargs, match in (
        (dict(learning_rate=0.0, total_steps=10, decay_fraction=0.5), "learning_rate"),
        (dict(learning_rate=1.0, total_steps=0, decay_fraction=0.5), "total_steps"),
        (dict(learning_rate=1.0, total_steps=10, decay_fraction=1.5), "decay_fraction"),
    ):
        with pytest.raises(ValueError, match=match):
            training.LinearDecayTail(**kwargs)
    config = _config(lr_decay_fraction=0.5, steps=10)
    optimizer = training.loop.make_optimizer(1e-3, config.train, "float32")
    optimizer.iterations.assign(10)
    assert float(optimizer.learning_rate) == 0.0


def test_flow_supervision_matches_numpy():
    config = _config()
    config.loss.stage1.update(dict(correctness=0.0, flow_supervision=1.0))
    trainer = training.build_trainer(config)
    batch = _supervised_batch(2, seed=1)
    rng = np.random.default_rng(2)
    flows = [
        rng.normal(size=(2, SIZE // s, SIZE // s, 2)).astype("float32")
        for s in trainer.attention_scales
    ]
    expected = 0.0
    for flow, s in zip(flows, trainer.attention_scales):
        n = SIZE // s
        vis = batch["visibility"].reshape(2, n, s, n, s, 1)
        fl = batch["flow"].reshape(2, n, s, n, s, 2)
        vis_mean = vis.mean(axis=(2, 4))
        mean = (
            np.where(
                vis_mean > 0,
                (fl * vis).mean(axis=(2, 4)) / np.maximum(vis_mean, 1e-12),
                fl.mean(axis=(2, 4)),
            )
            / s
        )
        visible = (vis_mean >= 0.5).astype("float64")
        error = np.linalg.norm(flow - mean, axis=-1, keepdims=True)
        expected += (error * visible).sum(axis=(1, 2, 3)) / (visible.sum(axis=(1, 2, 3)) + 1)
    got = trainer._flow_supervision(batch, [tf.constant(f) for f in flows])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


# --- Faults: resume from the newest intact state, never past the total, clean stops -----


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)


def _step(result):
    return int(result.trainer.optimizer.iterations.numpy())


def test_truncated_backup_falls_back_to_checkpoint_and_stale_temporaries_go(
    stage1_run, tmp_path, caplog
):
    _, source, _ = stage1_run
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    (backup,) = glob.glob(os.path.join(workdir, "backup", "backup-*.weights.h5"))
    _truncate(backup)
    os.mkdir(os.path.join(workdir, "checkpoints", ".tmp-ckpt-killed"))
    open(os.path.join(workdir, "backup", ".tmp-killed-backup.weights.h5"), "w").close()
    config = _config(steps=3, keep_checkpoints=1)
    with caplog.at_level(logging.INFO):
        result = training.train(
            config, workdir, strategy="default", verbose=0, dataset_fn=_dataset_fn
        )
    assert result.resumed.kind == "checkpoint" and result.resumed.step == 2
    assert result.resumed.unreadable == [backup]
    assert "from the checkpoint" in caplog.text and backup in caplog.text
    assert _step(result) == 3
    assert os.path.exists(backup)  # never deleted, even by the backup rotation
    leftovers = glob.glob(os.path.join(workdir, "*", ".tmp-*"))
    assert leftovers == []


def test_resume_from_skips_a_truncated_checkpoint_and_stops_at_the_total(stage1_run, tmp_path):
    _, _, result = stage1_run  # its trainer is at step 2
    source = str(tmp_path / "source")
    training.save_checkpoint(result.trainer, source, 1, keep=5)
    newest = training.save_checkpoint(result.trainer, source, 3, keep=5)
    _truncate(os.path.join(newest, training.checkpoints.TRAINER_WEIGHTS))
    config = _config(steps=3, steps_per_epoch=2, resume_from=source)
    resumed = training.train(
        config, str(tmp_path / "run"), strategy="default", verbose=0, dataset_fn=_dataset_fn
    )
    assert resumed.resumed.path == os.path.join(source, "ckpt-00000001", "trainer.weights.h5")
    # Resumed at step 2 of 3 mid-epoch: one more step, not a whole epoch (or the 3 requested).
    assert _step(resumed) == 3


def test_all_states_unreadable_is_an_error_that_deletes_nothing(stage1_run, tmp_path):
    _, _, result = stage1_run
    workdir = str(tmp_path / "run")
    ckpt = training.save_checkpoint(result.trainer, os.path.join(workdir, "checkpoints"), 2)
    _truncate(os.path.join(ckpt, "trainer.weights.h5"))
    with pytest.raises(RuntimeError, match="none of the 1 saved training state"):
        training.restore_latest(training.build_trainer(_config()), workdir)
    assert os.path.exists(os.path.join(ckpt, "trainer.weights.h5"))


def _cli(*args):
    from gfla_tf.cli import train as train_cli

    return train_cli.main(["gfla train", "--config", f"{CONFIG}:test", *args])


CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "synthetic.py")


def test_disk_full_in_first_backup_exits_1_then_rerun_resumes_from_checkpoint(
    tmp_path, monkeypatch, capsys, caplog
):
    workdir = str(tmp_path / "run")
    args = (
        "--workdir",
        workdir,
        "--verbose=0",
        "--config.train.steps=2",
        "--config.train.steps_per_epoch=1",
        "--config.train.checkpoint_every=1",
    )
    save_weights = keras.Model.save_weights

    def full_disk(model, path, *a, **k):
        if "backup" in os.path.basename(path):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return save_weights(model, path, *a, **k)

    monkeypatch.setattr(keras.Model, "save_weights", full_disk)
    monkeypatch.setattr(training.checkpoints, "_FAILED_WRITES", [])
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)  # HDF5 may not survive a normal exit
    assert _cli(*args) == 1
    assert exits == [1]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disk full" in err and "same command" in err
    assert os.listdir(os.path.join(workdir, "backup")) == []  # nothing half-written
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "ckpt-00000001"))

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    with caplog.at_level(logging.INFO):
        assert _cli(*args) == 0
    assert "resuming at epoch 1 (step 1) from the checkpoint" in caplog.text
    assert "trained stage 1 to step 2" in capsys.readouterr().out


def test_weights_are_written_only_where_they_fit(stage1_run, tmp_path, monkeypatch):
    _, _, result = stage1_run
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(OSError, match=r"MB free, about [0-9.]+ MB needed") as info:
        training.save_checkpoint(result.trainer, str(tmp_path / "checkpoints"), 5)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path / "checkpoints") == []


def test_sigint_stops_cleanly_saves_and_leaves_the_config_alone(tmp_path):
    config = synthetic.get_config("test")
    config.train.update(dict(steps=3, steps_per_epoch=3, checkpoint_every=100))
    before = config.to_dict()
    # What was installed before (SIG_IGN when the tests run in a background job).
    handler = signal.getsignal(signal.SIGINT)

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                os.kill(os.getpid(), signal.SIGINT)

    workdir = str(tmp_path / "run")
    with pytest.raises(training.TrainingInterrupted, match="at step 1; .*same command"):
        training.train(
            config, workdir, strategy="default", verbose=0, extra_callbacks=[Interrupt()]
        )
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "ckpt-00000001"))
    assert signal.getsignal(signal.SIGINT) is handler
    assert config.to_dict() == before and config.data.root == ""


def test_cli_help_lists_config_fields_and_typos_get_one_line(capsys):
    from gfla_tf.cli import train as train_cli

    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["gfla train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--strategy" in out
    assert re.search(r"train\.steps\s+200000", out)
    assert _cli("--workdir", "unused", "--config.train.stpes=5") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "gfla train: --config: unknown config field 'config.train.stpes' "
        "(did you mean 'config.train.steps'?)"
    )
    assert _cli("--workdir", "unused", "--config.train.steps", "x") == 2
    assert "bad value 'x' for config.train.steps" in capsys.readouterr().err


def test_config_overrides_parse_as_the_field_type():
    from gfla_tf import configs

    config = synthetic.get_config("test")
    configs.override(config, "train.lr_decay_fraction", "1")
    configs.override(config, "data.augment", "true")
    configs.override(config, "model.attention_layers", "(3, 2)")
    configs.override(config, "data.root", "/some/where")
    assert config.train.lr_decay_fraction == 1.0 and config.data.augment is True
    assert config.model.attention_layers == (3, 2) and config.data.root == "/some/where"


def test_configs_are_locked_and_every_field_is_in_base():
    from gfla_tf import configs
    from gfla_tf.configs import base, deepfashion, market

    with pytest.raises(AttributeError, match="stpes"):
        synthetic.get_config("test").train.stpes = 5
    fields = set(configs.flatten(base.get_base_config()))
    for module in (deepfashion, market, synthetic):
        for variant in (None, "small", "test"):
            assert set(configs.flatten(module.get_config(variant))) == fields
    assert configs.load("synthetic:test").name == "synthetic"
    with pytest.raises(configs.ConfigError, match="no config file"):
        configs.load("no_such_config")


def test_load_config_fills_fields_a_saved_run_lacks(tmp_path):
    config = synthetic.get_config("test")
    saved = json.loads(config.to_json())
    del saved["model"]["normalize_source_image"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = training.load_config(str(tmp_path))
    assert loaded.model.normalize_source_image is True  # the base default
    assert loaded.model.attention_layers == config.model.attention_layers


@pytest.mark.parametrize("name", sorted(training.compat.OVERRIDES))
def test_private_keras_override_still_matches_keras(name):
    """One check per private Keras method compat.py overrides: signature and call site."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    parameters, (caller, call) = training.compat.OVERRIDES[name]
    assert tuple(inspect.signature(getattr(TensorFlowTrainer, name)).parameters) == parameters
    assert call in inspect.getsource(getattr(TensorFlowTrainer, caller))
    # Ours keeps the signature, so Keras' call reaches it.
    ours = getattr(training.compat.DistributedFitMixin, name)
    assert tuple(inspect.signature(ours).parameters) == parameters
    training.compat.check_keras()


def test_no_other_module_overrides_private_keras_methods():
    import gfla_tf

    root = os.path.dirname(gfla_tf.__file__)
    private = ("_load_model", "_save_model", "_initial_epoch", *training.compat.OVERRIDES)
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
        if path.endswith(os.path.join("training", "compat.py")):
            continue
        with open(path) as f:
            text = f.read()
        for name in private:
            assert f"def {name}(" not in text and f".{name} =" not in text, (path, name)
