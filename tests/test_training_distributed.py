"""End-to-end ``gfla train`` runs in subprocesses: 2-worker MultiWorkerMirroredStrategy on
127.0.0.1, and kill -9 / restart resuming through BackupAndRestore."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gfla_tf.data import synthetic

pytestmark = pytest.mark.slow

CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "synthetic.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data") / "synthetic")
    synthetic.generate_dataset(root, 16, num_test_pairs=4, size=32, seed=0)
    return root


def _command(workdir, data_root, *extra):
    return [
        sys.executable,
        "-m",
        "gfla_tf.cli.main",
        "train",
        f"--config={CONFIG}:test",
        f"--workdir={workdir}",
        f"--config.data.root={data_root}",
        "--config.train.steps_per_epoch=1",
        "--config.train.log_every=1",
        "--verbose=2",
        *extra,
    ]


def _env(**extra):
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_training_on_localhost(tmp_path, data_root):
    ports = _free_ports(2)
    workdir = str(tmp_path / "run")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                _command(workdir, data_root, "--strategy=multiworker", "--config.train.steps=2"),
                env=_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        outputs.append(out)
        assert proc.returncode == 0, out[-3000:]
    assert "CollectiveAllReduceStrategy with 2 replica(s)" in outputs[0]
    assert "trained stage 1 to step 2" in outputs[0]  # the chief reports and writes
    assert "trained stage 1 to step 2" not in outputs[1]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "ckpt-00000002"))

    def final_loss(text):
        lines = [line for line in text.splitlines() if "g_loss:" in line]
        return lines[-1].split("g_loss:")[1].split()[0]

    # Both workers log the same globally reduced loss.
    assert final_loss(outputs[0]) == final_loss(outputs[1])


def test_sigkill_then_restart_resumes(tmp_path, data_root):
    workdir = str(tmp_path / "run")
    metadata = os.path.join(workdir, "backup", "training_metadata.json")
    command = _command(workdir, data_root, "--config.train.steps=5")
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 400
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(metadata):
            with open(metadata) as f:
                epoch = json.load(f)["epoch"]
            if epoch >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with open(metadata) as f:
        killed_at = json.load(f)["epoch"]
    assert 2 <= killed_at < 5

    restarted = subprocess.run(
        command,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=400,
    )
    out = restarted.stdout
    assert restarted.returncode == 0, out[-3000:]
    assert f"resuming at epoch {killed_at} (step {killed_at})" in out
    # Keras counts epochs from 1: the restarted run trains only the remaining epochs.
    assert f"Epoch {killed_at + 1}/5" in out and "Epoch 1/5" not in out
    assert "trained stage 1 to step 5" in out
