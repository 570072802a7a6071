"""The standalone CUDA check of benchmarks/gpu/: its CPU-side parts run everywhere, the
harness itself only where nvcc (compile) or a GPU (run) exists."""

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_DIR = os.path.join(ROOT, "benchmarks", "gpu")
SCRIPT = os.path.join(GPU_DIR, "run_gpu_check.sh")


def _nvcc():
    return (
        os.environ.get("NVCC")
        or shutil.which("nvcc")
        or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    )


def _gpu_visible():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return proc.returncode == 0 and "GPU" in proc.stdout


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(GPU_DIR, "gpu_check.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not ops.status()["loaded"], reason="custom op library not built")
def test_gpu_check_reference_agrees_with_cpu_kernels():
    """Feeds the CPU kernels' outputs to gpu_check.compare(): validates its cases, NumPy
    reference and tolerances without a GPU."""
    gpu_check = _gpu_check_module()
    for case in gpu_check.make_cases():
        k = case["geometry"][-1]
        s, f, a = (tf.constant(case[n]) for n in ("source", "flow", "attention"))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([s, f, a])
            out = ops.local_attention(s, f, a, k, impl="custom")
            block = ops.block_extract(s, f, k, impl="custom")
            loss = tf.reduce_sum(out * case["grad"])
            block_loss = tf.reduce_sum(block * case["block_grad"])
        gs, gf, ga = tape.gradient(loss, [s, f, a])
        bgs, bgf = tape.gradient(block_loss, [s, f])
        outputs = {
            "out_local_attention": out,
            "out_block_extract": block,
            "grad_source": gs,
            "grad_flow": gf,
            "grad_attention": ga,
            "block_grad_source": bgs,
            "block_grad_flow": bgf,
        }
        assert gpu_check.compare(case, {k_: np.asarray(v) for k_, v in outputs.items()}) == []


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not found")
def test_gpu_harness_compiles():
    proc = subprocess.run(
        ["bash", SCRIPT, "--compile-only"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiled harness" in proc.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_visible(), reason="no CUDA GPU visible (nvidia-smi -L)")
def test_gpu_check_runs():
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "correctness: OK" in proc.stdout
