"""``gfla convert``: the authors' PyTorch checkpoints -> ``.keras`` files.

Usage::

    gfla convert --config configs/deepfashion.py --generator latest_net_G.pth \
        [--discriminator latest_net_D.pth] --output model.keras

The generator (flow estimator inside) goes to ``--output``; the discriminator, when given,
to ``--discriminator-output`` (default: ``<output stem>.discriminator.keras`` next to it),
so ``keras.models.load_model(output)`` is all inference needs. ``.pth`` files need torch
(``pip install 'gfla-tf[convert]'``); ``.npz`` archives of the state dict work without it.
Files are written to a temporary name and renamed once everything converted: a failure
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING

from gfla_tf import io
from gfla_tf.cli.main import ArgumentParser
from gfla_tf.io import TMP_PREFIX

if TYPE_CHECKING:
    import ml_collections

_log = logging.getLogger(__name__)


def discriminator_path(output: str) -> str:
    """The default discriminator file next to the generator file ``output``."""
    stem = output[: -len(".keras")] if output.endswith(".keras") else output
    return stem + ".discriminator.keras"


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py[:variant]`` or a built-in name (``deepfashion[:test]``).

    Args:
      spec: config file path or ``gfla_tf.configs`` module name, optional ``:variant``.

    Returns:
      The ml_collections ConfigDict.

    Raises:
      ValueError: the file or module does not exist or has no ``get_config``.
    """
    path, _, variant = spec.partition(":")
    variant = variant or None
    if os.path.exists(path):
        module_spec = importlib.util.spec_from_file_location("gfla_convert_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            module = importlib.import_module(f"gfla_tf.configs.{name}")
        except ImportError as err:
            raise ValueError(f"--config: no config file or built-in config named {path!r}") from err
    if not hasattr(module, "get_config"):
        raise ValueError(f"--config: {path} has no get_config(variant)")
    return module.get_config(variant)


def _parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog, description="Convert the authors' PyTorch GFLA checkpoints to .keras files."
    )
    parser.add_argument("--config", required=True, help="config file[:variant] or name")
    parser.add_argument("--generator", required=True, help="generator state dict (.pth/.npz)")
    parser.add_argument("--discriminator", help="discriminator state dict (.pth/.npz)")
    parser.add_argument("--output", required=True, help="generator .keras file to write")
    parser.add_argument("--discriminator-output", help="discriminator .keras file to write")
    parser.add_argument(
        "--impl",
        choices=("auto", "custom", "reference"),
        help="local attention op stored in the model (default: the config's op_impl)",
    )
    return parser


def _unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written (its folder is created if needed), or None."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        # A real write: permission bits alone say nothing for root or a read-only mount.
        with tempfile.TemporaryFile(prefix=TMP_PREFIX, dir=directory):
            pass
    except OSError as err:
        return f"cannot write {path}: {err.strerror or err} ({directory})"
    return None


def _save_all(targets: list[tuple[object, str]]) -> None:
    """Saves every (model, path) through temporaries; renames only once all are saved."""
    with contextlib.ExitStack() as stack:
        staged = [(model, stack.enter_context(io.atomic_path(path))) for model, path in targets]
        for model, tmp in staged:
            model.save(tmp)


def main(argv: list[str]) -> int:
    """Runs ``gfla convert``; returns the exit status."""
    args = _parser(argv[0]).parse_args(argv[1:])
    if not args.output.endswith(".keras"):
        print(f"{argv[0]}: --output must end with .keras, got {args.output}", file=sys.stderr)
        return 2
    d_output = args.discriminator_output or discriminator_path(args.output)
    if args.discriminator and not d_output.endswith(".keras"):
        print(f"{argv[0]}: --discriminator-output must end with .keras", file=sys.stderr)
        return 2
    outputs = [args.output] + ([d_output] if args.discriminator else [])
    for path in outputs:
        problem = _unwritable(path)
        if problem:
            print(f"{argv[0]}: {problem}", file=sys.stderr)
            return 1
    from gfla_tf import convert

    try:
        config = load_config(args.config)
        g_state = convert.load_state_dict(args.generator)
        d_state = convert.load_state_dict(args.discriminator) if args.discriminator else None
        generator, discriminator = convert.convert_checkpoint(
            config, g_state, d_state, impl=args.impl
        )
    except (ValueError, ImportError, OSError) as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1

    targets = [(generator, args.output)]
    if discriminator is not None:
        targets.append((discriminator, d_output))
    try:
        _save_all(targets)
    except OSError as err:
        print(
            f"{argv[0]}: cannot write {err.filename or args.output}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    for _, path in targets:
        print(f"wrote {path}")
    return 0
