"""Install gfla-tf and compile its custom op library against the installed TensorFlow.

The op library is built by ``custom_ops/build.py`` (g++ with ``tf.sysconfig`` flags, plus
nvcc for the CUDA kernels when it is found). TensorFlow must already be installed, so
install with ``pip install --no-build-isolation``; see README.md.

Set ``GFLA_SKIP_OP_BUILD=1`` to install without the library: every op then runs its
pure-TF reference implementation.
"""

import logging
import os
import runpy

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildTFOps(build_ext):
    """Builds ``gfla_tf/ops/_gfla_ops.so`` with the TensorFlow custom-op toolchain."""

    def run(self):
        if os.environ.get("GFLA_SKIP_OP_BUILD") == "1":
            logging.warning("GFLA_SKIP_OP_BUILD=1: not building the custom op library")
            # Nothing to build means nothing for the (editable) install to copy.
            self.extensions = []
        super().run()

    def build_extension(self, ext):
        builder = runpy.run_path(os.path.join(HERE, "custom_ops", "build.py"))
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        builder["build_library"](output=target, verbose=self.verbose)


def _version():
    ns = {}
    with open(os.path.join(HERE, "gfla_tf", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                exec(line, ns)
    return ns["__version__"]


setup(
    name="gfla-tf",
    version=_version(),
    description="Global-Flow Local-Attention pose-guided person image generation in TF/Keras",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["gfla_tf", "gfla_tf.*"]) + ["gfla_tf.configs"],
    package_dir={"gfla_tf.configs": "configs"},
    # The page of `gfla demo` (HTML, CSS, JavaScript), served from the installed package.
    package_data={"gfla_tf.demo": ["static/*.html", "static/*.css", "static/*.js"]},
    # The name keeps the .so inside gfla_tf/ops/ where the lazy loader looks for it.
    ext_modules=[Extension("gfla_tf.ops._gfla_ops", sources=[])],
    cmdclass={"build_ext": BuildTFOps},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy",
        "pillow",
        "absl-py",
        "ml-collections",
        # gfla evaluate: the paper's SSIM variants and Market's person mask.
        "scikit-image",
        "tensorboard",
        # gfla demo: the ASGI app and its server.
        "starlette>=0.40",
        "uvicorn>=0.30",
    ],
    extras_require={
        "convert": ["torch"],
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        "tflite": ["ai-edge-litert"],
        "test": [
            "pytest",
            "pytest-xdist",
            "ruff",
            "ai-edge-litert",
            "tensorflow-serving-api",
            "httpx",
            "playwright",
        ],
    },
    entry_points={"console_scripts": ["gfla=gfla_tf.cli.main:main"]},
    zip_safe=False,
)
