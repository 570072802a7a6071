"""Checks the framework-free CUDA kernels against NumPy and measures their bandwidth.

Needs only NumPy and a compiled ``harness`` (see run_gpu_check.sh); no TensorFlow.

1. Correctness: for every case of ``make_cases()`` the inputs are written to a temporary
   directory, ``harness check DIR`` runs the four launchers, and ``compare()`` checks the
   outputs against ``numpy_reference.py`` (forward and backward).
2. Speed: ``harness bench`` times forward+backward of local attention at the DeepFashion
   sizes (k=3 32x32 C=256, k=5 64x64 C=128, batch 8, float32). The achieved bandwidth is
   the minimal traffic (every input read once, every output written once) over the time;
   it is reported as a fraction of a measured device-to-device copy bandwidth. Target:
   >= 50%.

Usage: python gpu_check.py --harness PATH [--repeats 20]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_reference as nref  # noqa: E402

BENCH_CASES = [(8, 32, 256, 3), (8, 64, 128, 5)]
TARGET_FRACTION = 0.5


def make_cases(seed=0):
    """Small cases covering odd/even k, non-square maps, C not a multiple of 32, clamped,
    huge and fractional flows, both dtypes. Returns a list of dicts."""
    rng = np.random.default_rng(seed)
    specs = [
        # batch, h, w, hs, ws, c, k, dtype
        (2, 5, 7, 6, 4, 3, 3, "float32"),
        (1, 4, 4, 4, 4, 33, 2, "float32"),
        (2, 3, 5, 5, 6, 64, 5, "float64"),
        (1, 6, 3, 4, 7, 1, 1, "float64"),
        (1, 4, 6, 5, 5, 40, 7, "float32"),
    ]
    cases = []
    for batch, h, w, hs, ws, c, k, dtype in specs:
        flow = rng.normal(size=(batch, h, w, 2)) * 3.0
        flow[0, 0, 0] = [1e6, -1e6]  # far outside: every tap clamps to a corner
        source = rng.normal(size=(batch, hs, ws, c))
        cases.append(
            {
                "geometry": (batch, h, w, hs, ws, c, k),
                "dtype": dtype,
                "source": source.astype(dtype),
                "flow": flow.astype(dtype),
                "attention": rng.random((batch, h, w, k * k)).astype(dtype),
                "grad": rng.normal(size=(batch, h, w, c)).astype(dtype),
                "block_grad": rng.normal(size=(batch, h, w, k * k, c)).astype(dtype),
            }
        )
    return cases


def expected(case):
    """NumPy reference outputs of one case, keyed like the harness output files."""
    k = case["geometry"][-1]
    s, f, a = case["source"], case["flow"], case["attention"]
    gs, gf, ga = nref.local_attention_backward(case["grad"], s, f, a, k)
    bgs, bgf = nref.block_extract_backward(case["block_grad"], s, f, k)
    return {
        "out_local_attention": nref.local_attention(s, f, a, k),
        "out_block_extract": nref.block_extract(s, f, k),
        "grad_source": gs,
        "grad_flow": gf,
        "grad_attention": ga,
        "block_grad_source": bgs,
        "block_grad_flow": bgf,
    }


def compare(case, outputs):
    """Returns a list of failure strings (empty when every output matches)."""
    tol = 1e-4 if case["dtype"] == "float32" else 1e-10
    failures = []
    for name, want in expected(case).items():
        got = np.asarray(outputs[name], np.float64).reshape(want.shape)
        if not np.allclose(got, want, rtol=tol, atol=tol):
            err = np.nanmax(np.abs(got - want))
            failures.append(f"{case['geometry']} {case['dtype']} {name}: max abs error {err:.3g}")
    return failures


def run_harness_case(harness, case):
    """Runs ``harness check`` on one case; returns its outputs as flat arrays."""
    with tempfile.TemporaryDirectory(prefix="gfla_gpu_check_") as tmp:
        with open(os.path.join(tmp, "meta.txt"), "w") as f:
            f.write(" ".join(str(v) for v in case["geometry"]) + f" {case['dtype']}\n")
        for name in ("source", "flow", "attention", "grad", "block_grad"):
            np.ascontiguousarray(case[name]).tofile(os.path.join(tmp, f"{name}.bin"))
        subprocess.run([harness, "check", tmp], check=True)
        return {
            name: np.fromfile(os.path.join(tmp, f"{name}.bin"), dtype=case["dtype"])
            for name in expected(case)
        }


def main(argv=None):
    """Runs the correctness check and the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", required=True, help="compiled harness binary")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    failures = []
    for case in make_cases():
        failures += compare(case, run_harness_case(args.harness, case))
    print(f"correctness: {'OK' if not failures else 'FAILED'} ({len(make_cases())} cases)")
    for line in failures:
        print("  " + line)
    rows = []
    for batch, size, channels, k in BENCH_CASES:
        proc = subprocess.run(
            [
                args.harness,
                "bench",
                str(batch),
                str(size),
                str(channels),
                str(k),
                str(args.repeats),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if rows:
        print(
            f"\nDevice: {rows[0]['device']}; float32; median of {args.repeats}; "
            f"D2D copy bandwidth {rows[0]['copy_gbs']:.0f} GB/s\n"
        )
    print(
        "| case | forward ms | backward ms | fwd+bwd ms | minimal MB | achieved GB/s "
        "| fraction of copy bw |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    below = []
    for r in rows:
        total_ms = r["forward_ms"] + r["backward_ms"]
        gbs = r["min_bytes"] / (total_ms * 1e-3) / 1e9
        fraction = gbs / r["copy_gbs"]
        if fraction < TARGET_FRACTION:
            below.append(r)
        print(
            f"| k={r['k']}, {r['size']}x{r['size']}, C={r['channels']}, B={r['batch']} "
            f"| {r['forward_ms']:.3f} | {r['backward_ms']:.3f} | {total_ms:.3f} "
            f"| {r['min_bytes'] / 1e6:.1f} | {gbs:.0f} | {fraction:.0%} |"
        )
    if below:
        print(f"\nnote: {len(below)} case(s) below the {TARGET_FRACTION:.0%} target")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
