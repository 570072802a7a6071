"""Builds the gfla-tf custom op library against the installed TensorFlow.

``build_library(output)`` compiles ``custom_ops/cc`` with g++ (C++17, ``-O2``) and the flags
of ``tf.sysconfig``. When ``nvcc`` is found and the TensorFlow wheel ships its CUDA headers,
the CUDA kernels are compiled too (``-DGOOGLE_CUDA=1``, cudart linked statically); if that
fails the library is built CPU-only with a warning, never failing the install. The result
is written to a temporary file and renamed into place.

setup.py calls ``build_library`` from its build_ext; it also runs standalone::

    python custom_ops/build.py [--output PATH] [--cpu-only] [-v]

Environment: ``GFLA_BUILD_CUDA=0`` skips CUDA, ``=1`` makes a CUDA failure an error;
``NVCC`` / ``CUDA_HOME`` locate the toolkit; ``GFLA_CUDA_ARCHS`` (default ``80;90``) lists
the SM versions (PTX for the last one is embedded for newer GPUs); ``CXX`` picks g++.
"""

import argparse
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

_log = logging.getLogger("gfla_build")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CC_DIR = os.path.join(HERE, "cc")
CPU_SOURCES = (
    os.path.join(CC_DIR, "ops", "local_attention_ops.cc"),
    os.path.join(CC_DIR, "kernels", "local_attention_kernels.cc"),
)
CUDA_SOURCE = os.path.join(CC_DIR, "kernels", "local_attention_kernels.cu.cc")
# -fopenmp-simd honours the "omp simd" loop hints without linking an OpenMP runtime.
COMMON_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-fopenmp-simd", "-DGFLA_OPENMP_SIMD"]
QUIET_FLAGS = ["-Wno-deprecated-declarations", "-Wno-unused-result", "-Wno-sign-compare"]


def default_output():
    """Path of the library inside the package, named like setuptools names extensions."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return os.path.join(ROOT, "gfla_tf", "ops", "_gfla_ops" + suffix)


def _tf_config():
    import tensorflow as tf

    return {
        "version": tf.__version__,
        "include": tf.sysconfig.get_include(),
        "compile": list(tf.sysconfig.get_compile_flags()),
        "link": list(tf.sysconfig.get_link_flags()),
    }


def find_cuda():
    """Locates nvcc and the toolkit's library directory.

    Returns:
      (nvcc path, lib64 directory) or (None, None).
    """
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc:
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        candidate = os.path.join(home, "bin", "nvcc")
        nvcc = candidate if os.path.isfile(candidate) else None
    if not nvcc:
        return None, None
    # nvcc on PATH may be a wrapper script, so also try the conventional toolkit homes.
    homes = [
        os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        "/usr/local/cuda",
    ]
    for home in filter(None, homes):
        for lib in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            if os.path.isfile(os.path.join(home, lib, "libcudart_static.a")):
                return nvcc, os.path.join(home, lib)
    return nvcc, None


def _cuda_archs():
    archs = [a.strip() for a in os.environ.get("GFLA_CUDA_ARCHS", "80;90").split(";") if a.strip()]
    flags = []
    for arch in archs:
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags


def _run_parallel(commands, verbose):
    """Runs the commands concurrently; returns a list of (returncode, output)."""
    procs = []
    for cmd in commands:
        if verbose:
            _log.info("%s", " ".join(cmd))
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return [(p.wait(), p.stdout.read()) for p in procs]


def _compile_cmd(cxx, source, obj, tf, defines, extra):
    return [
        cxx,
        *COMMON_FLAGS,
        *QUIET_FLAGS,
        *tf["compile"],
        *defines,
        *extra,
        "-c",
        source,
        "-o",
        obj,
    ]


def build_library(output=None, verbose=0, cuda=None):
    """Compiles the op library.

    Args:
      output: path of the shared library to write; default ``default_output()``.
      verbose: log the compiler commands when > 0.
      cuda: True to require the CUDA kernels, False to skip them, None (default) to build
        them when possible; ``GFLA_BUILD_CUDA`` overrides None.

    Returns:
      The path of the written library.

    Raises:
      RuntimeError: if the CPU build fails, or ``cuda`` is True and the CUDA build fails.
    """
    start = time.time()
    output = os.path.abspath(output or default_output())
    if cuda is None and os.environ.get("GFLA_BUILD_CUDA") in ("0", "1"):
        cuda = os.environ["GFLA_BUILD_CUDA"] == "1"
    tf = _tf_config()
    cxx = os.environ.get("CXX", "g++")
    defines = [f'-DGFLA_BUILT_FOR_TF="{tf["version"]}"', '-DGFLA_BUILD_TOOL="build.py"']
    out_dir = os.path.dirname(output)
    os.makedirs(out_dir, exist_ok=True)

    nvcc, cuda_lib = (None, None) if cuda is False else find_cuda()
    cuda_headers = os.path.join(tf["include"], "third_party", "gpus", "cuda", "include")
    cuda_reason = None
    if cuda is False:
        cuda_reason = "CUDA disabled"
    elif nvcc is None:
        cuda_reason = "nvcc not found"
    elif cuda_lib is None:
        cuda_reason = f"libcudart_static.a not found next to {nvcc}"
    elif not os.path.isfile(os.path.join(cuda_headers, "cuda_runtime.h")):
        cuda_reason = "the TensorFlow wheel ships no CUDA headers"
    if cuda_reason and cuda:
        raise RuntimeError(f"CUDA build requested but impossible: {cuda_reason}")

    with tempfile.TemporaryDirectory(prefix="gfla_build_") as tmp:
        objs = [os.path.join(tmp, f"cpu{i}.o") for i in range(len(CPU_SOURCES))]
        cmds = [_compile_cmd(cxx, src, obj, tf, defines, []) for src, obj in zip(CPU_SOURCES, objs)]
        link_extra = []
        if cuda_reason is None:
            cuda_obj = os.path.join(tmp, "cuda.o")
            gpu_defines = defines + ["-DGOOGLE_CUDA=1"]
            gpu_cmds = [
                [
                    nvcc,
                    "-std=c++17",
                    "-O2",
                    "-x",
                    "cu",
                    "-Xcompiler",
                    "-fPIC",
                    "-DGOOGLE_CUDA=1",
                    *_cuda_archs(),
                    "-c",
                    CUDA_SOURCE,
                    "-o",
                    cuda_obj,
                ],
                _compile_cmd(cxx, CPU_SOURCES[1], objs[1], tf, gpu_defines, [f"-I{cuda_headers}"]),
            ]
            results = _run_parallel([cmds[0]] + gpu_cmds, verbose)
            if results[0][0] != 0:
                raise RuntimeError(f"compiling {CPU_SOURCES[0]} failed:\n{results[0][1]}")
            failed = [(c, r) for c, r in zip(gpu_cmds, results[1:]) if r[0] != 0]
            if failed:
                cuda_reason = (
                    f"CUDA compile failed: {' '.join(failed[0][0][:1])}:\n{failed[0][1][1][-4000:]}"
                )
                if cuda:
                    raise RuntimeError(cuda_reason)
                _log.warning("%s\nbuilding the CPU-only library instead", cuda_reason)
                cmds = [cmds[1]]
            else:
                cmds = []
                objs.append(cuda_obj)
                link_extra = [f"-L{cuda_lib}", "-l:libcudart_static.a", "-ldl", "-lrt", "-lpthread"]
        if cmds:
            for rc, out in _run_parallel(cmds, verbose):
                if rc != 0:
                    raise RuntimeError(f"compiling the op library failed:\n{out}")
        fd, tmp_lib = tempfile.mkstemp(prefix=".gfla_ops_", suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            link = [cxx, "-shared", "-fPIC", *objs, "-o", tmp_lib, *tf["link"], *link_extra]
            rc, out = _run_parallel([link], verbose)[0]
            if rc != 0:
                raise RuntimeError(f"linking the op library failed:\n{out}")
            os.chmod(tmp_lib, 0o755)
            os.replace(tmp_lib, output)
        finally:
            if os.path.exists(tmp_lib):
                os.unlink(tmp_lib)
    kind = "CPU+CUDA" if cuda_reason is None else f"CPU-only ({cuda_reason.splitlines()[0]})"
    _log.info("built %s library %s in %.1f s", kind, output, time.time() - start)
    return output


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="library path (default: in gfla_tf/ops)")
    parser.add_argument("--cpu-only", action="store_true", help="do not build CUDA kernels")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build_library(args.output, args.verbose, cuda=False if args.cpu_only else None)
    except RuntimeError as err:
        _log.error("%s", err)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
