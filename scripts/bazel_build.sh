#!/usr/bin/env bash
# Builds the custom op library with Bazel and checks that it loads and runs.
#
# Usage: scripts/bazel_build.sh [OUTPUT.so]
# Skips (exit 0) with a message when bazel is not installed. Set PYTHON_BIN_PATH to the
# Python that has TensorFlow installed (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bazel >/dev/null 2>&1; then
  echo "SKIP: bazel not found on PATH (on Debian: apt-get install bazel-bootstrap)"
  exit 0
fi
PYTHON_BIN_PATH="${PYTHON_BIN_PATH:-$(command -v python3 || command -v python)}"
export PYTHON_BIN_PATH

bazel build --jobs="${BAZEL_JOBS:-2}" //:_gfla_ops.so
lib="$(bazel info bazel-bin)/custom_ops/_gfla_ops.so"
if [[ $# -ge 1 ]]; then
  cp "$lib" "$1.tmp.$$" && mv "$1.tmp.$$" "$1"
  lib="$1"
fi
GFLA_OPS_LIBRARY="$lib" TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON_BIN_PATH" - <<'PY'
import numpy as np
from gfla_tf import ops

status = ops.status()
assert status["loaded"], status
out = ops.local_attention(np.ones((1, 4, 4, 2), "f"), np.zeros((1, 4, 4, 2), "f"),
                          np.ones((1, 4, 4, 9), "f"), 3, impl="custom")
np.testing.assert_allclose(out, 1.0)
print("bazel-built library OK:", status["library_path"], "build tool:", status["build_tool"])
PY
