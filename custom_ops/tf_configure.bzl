"""Repository rule exposing the installed TensorFlow pip package to Bazel.

Runs Python (``$PYTHON_BIN_PATH``, else ``python3``/``python`` on PATH) to read
``tf.sysconfig``, symlinks the header tree and ``libtensorflow_framework.so.2`` into the
external repository and generates its BUILD file plus ``defs.bzl`` with the compile flags
and the TF version.
"""

_SCRIPT = """
import json, os, tensorflow as tf
flags = tf.sysconfig.get_compile_flags()
link = tf.sysconfig.get_link_flags()
lib_dir = [f[2:] for f in link if f.startswith('-L')][0]
lib = [f[3:] for f in link if f.startswith('-l:')][0]
print(json.dumps({
    'include': tf.sysconfig.get_include(),
    'lib': os.path.join(lib_dir, lib),
    'lib_name': lib,
    'copts': [f for f in flags if not f.startswith('-I') and not f.startswith('--std')],
    'version': tf.__version__,
}))
"""

def _find_python(repository_ctx):
    env = repository_ctx.os.environ.get("PYTHON_BIN_PATH")
    if env:
        return env
    for name in ["python3", "python"]:
        path = repository_ctx.which(name)
        if path:
            return str(path)
    fail("tf_configure: no Python found; set PYTHON_BIN_PATH")

def _tf_configure_impl(repository_ctx):
    python = _find_python(repository_ctx)
    result = repository_ctx.execute(
        [python, "-c", _SCRIPT],
        environment = {"TF_CPP_MIN_LOG_LEVEL": "3"},
        quiet = True,
    )
    if result.return_code != 0:
        fail("tf_configure: importing tensorflow with %s failed:\n%s" % (python, result.stderr))
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    config = json.decode(lines[-1])
    repository_ctx.symlink(config["include"], "include")
    repository_ctx.symlink(config["lib"], config["lib_name"])
    repository_ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "tf_header_lib",
    hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.inc",
                 "include/Eigen/**", "include/unsupported/Eigen/**",
                 "include/third_party/eigen3/**"]),
    includes = ["include"],
)

cc_library(
    name = "libtensorflow_framework",
    srcs = ["%s"],
)
""" % config["lib_name"])
    repository_ctx.file("defs.bzl", "TF_VERSION = %r\nTF_COPTS = %r\n" % (
        config["version"],
        config["copts"],
    ))

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = ["PYTHON_BIN_PATH"],
    local = True,
)
