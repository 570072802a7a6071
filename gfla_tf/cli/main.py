"""Entry point of the ``gfla`` command: dispatches to one module per subcommand.

Subcommand modules are imported only when used, so ``gfla --help`` is fast (it does not
import TensorFlow) and a broken optional dependency of one command does not break the
others. Each module exposes ``main(argv: list[str]) -> int``; ``argv[0]`` is the program
name (``gfla <command>``), and parses its options with :class:`ArgumentParser`.

Logging is set up here, once, before TensorFlow is imported: a CPU-only user sees the
project's own progress and real warnings, not TensorFlow's start-up lines (oneDNN, CPU
features, CUDA driver probing). ``gfla --verbose <command>`` shows everything.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence

COMMANDS = {
    "quickstart": ("gfla_tf.cli.quickstart", "synthesise data, train both stages, export, report"),
    "train": ("gfla_tf.cli.train", "train one stage from a config (--config FILE, --config.a.b=V)"),
    "data": ("gfla_tf.cli.data", "dataset tools: synth, check, sheet"),
    "convert": ("gfla_tf.cli.convert", "convert the authors' PyTorch checkpoints to .keras"),
    "export": ("gfla_tf.cli.export", "export a model as a SavedModel (TF Serving) or TFLite"),
    "generate": ("gfla_tf.cli.generate", "render a person photo in a new pose"),
    "demo": ("gfla_tf.cli.demo", "a pose editor in the browser (local web server)"),
    "evaluate": ("gfla_tf.cli.evaluate", "compute SSIM/LPIPS/FID/EPE and write a report"),
    "doctor": ("gfla_tf.cli.doctor", "show the custom op library status and environment"),
}

# How to install a package that a command imports but the environment lacks, by the
# top-level module name. Runtime dependencies come with requirements.txt; the rest are
# setup.py extras.
_INSTALL_HINTS = {
    "tensorflow": "python3 -m pip install -r requirements.txt",
    "keras": "python3 -m pip install -r requirements.txt",
    "numpy": "python3 -m pip install -r requirements.txt",
    "scipy": "python3 -m pip install -r requirements.txt",
    "PIL": "python3 -m pip install -r requirements.txt",
    "absl": "python3 -m pip install -r requirements.txt",
    "ml_collections": "python3 -m pip install -r requirements.txt",
    "torch": "python3 -m pip install torch  (or: python3 -m pip install -e '.[convert]')",
    "torchvision": "python3 -m pip install -e '.[pretrained]'",
    "lpips": "python3 -m pip install -e '.[pretrained]'",
    "ai_edge_litert": "python3 -m pip install ai-edge-litert  (or the '.[tflite]' extra)",
    "tensorflow_serving": "python3 -m pip install -e '.[serving]'",
    "grpc": "python3 -m pip install -e '.[serving]'",
}

# TensorFlow's start-up lines: written to stderr before its logging is initialised, so
# TF_CPP_MIN_LOG_LEVEL does not reach them (measured with TF 2.21: oneDNN, cudart stub
# and cpu_feature_guard lines, each printed twice, once per TF shared library).
_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] "
    r"|To enable the following instructions: "
    r"|E\d{4} .*Unable to register cu\w+ factory"
)


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every ``gfla`` command: a bad option is one line on stderr, exit 2."""

    def error(self, message: str) -> None:  # argparse's hook; it must not return
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _usage() -> str:
    lines = ["usage: gfla [--verbose] <command> [options]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += [
        "",
        "options:",
        "  -h, --help     show this help",
        "  -v, --verbose  also show TensorFlow's and the libraries' own log lines",
        "  --version      print the gfla-tf version",
        "",
        "Run 'gfla <command> --help' for the options of a command.",
    ]
    return "\n".join(lines)


def configure_logging(verbose: bool = False) -> None:
    """Sets the log levels of TensorFlow (C++ and Python) and the project.

    Must run before TensorFlow is imported to reach its C++ logging. A level the user set
    in ``TF_CPP_MIN_LOG_LEVEL`` is kept.

    Args:
      verbose: show every library's INFO lines; otherwise only the project's own INFO
        lines and everyone's warnings.
    """
    # 3 hides C++ ERROR lines too: on a CPU-only machine those are CUDA driver probing
    # ("failed call to cuInit"); real failures reach the user as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("gfla_tf").setLevel(logging.INFO)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its start-up lines filtered out of stderr."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _STARTUP_NOISE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def missing_dependency_message(module_name: str) -> str:
    """The one-line message for a package that is not installed.

    Args:
      module_name: the module that failed to import (``ModuleNotFoundError.name``).

    Returns:
      ``"needs the Python package X, which is not installed: <install command>"``.
    """
    top = module_name.split(".")[0]
    hint = _INSTALL_HINTS.get(top, f"python3 -m pip install {top}")
    return f"needs the Python package {top!r}, which is not installed: {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``gfla [--verbose] <command> ...`` and returns its exit status.

    Args:
      argv: the command line, program name first (default: ``sys.argv``).

    Returns:
      The command's exit status; 2 for a bad command line.
    """
    argv = list(sys.argv if argv is None else argv)
    args = argv[1:]
    verbose = False
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-h", "--help"):
            print(_usage())
            return 0
        if option == "--version":
            from gfla_tf import __version__

            print(f"gfla-tf {__version__}")
            return 0
        if option in ("-v", "--verbose"):
            verbose = True
            continue
        print(f"gfla: error: unknown option {option!r} (see 'gfla --help')", file=sys.stderr)
        return 2
    if not args:
        print(_usage(), file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "help":
        print(_usage())
        return 0
    if command not in COMMANDS:
        print(
            f"gfla: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    prog = f"gfla {command}"
    configure_logging(verbose)
    try:
        if verbose:
            import tensorflow  # noqa: F401
        else:
            _import_tensorflow_quietly()
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main([prog] + rest) or 0)
    except ModuleNotFoundError as err:
        if not err.name or err.name.split(".")[0] == "gfla_tf":
            raise
        print(f"{prog}: {missing_dependency_message(err.name)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
