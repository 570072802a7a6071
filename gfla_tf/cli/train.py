"""``gfla train``: train one stage of GFLA from a config file.

Example::

    gfla train --config configs/deepfashion.py --workdir runs/df_stage1
    gfla train --config configs/deepfashion.py --workdir runs/df_stage2 \\
        --config.train.stage=2 --config.train.stage1_checkpoint=runs/df_stage1
    gfla train --config configs/synthetic.py:test --workdir /tmp/run --strategy mirrored

Running the same command again after an interruption (Ctrl-C, ``kill -9``, a full disk)
resumes from the newest intact training state in the workdir. Multi-worker training reads
the cluster from ``TF_CONFIG``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
_OVERRIDE = "--config."


def _fields_help() -> str:
    from gfla_tf.configs import base, flatten

    fields = flatten(base.get_base_config())
    width = max(len(name) for name in fields)
    lines = [
        "config fields (override with --config.FIELD=VALUE; defaults of configs/base.py,",
        "which the dataset configs change in part):",
    ]
    lines += [f"  {name.ljust(width)}  {value!r}" for name, value in fields.items()]
    return "\n".join(lines)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train one stage of GFLA from a config file. Rerunning the same command\n"
        "after an interruption resumes from the newest intact training state in --workdir.",
        epilog=_fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE[:VARIANT]",
        help="config file (configs/deepfashion.py) or built-in name (deepfashion), "
        "optionally with ':small' or ':test'",
    )
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, logs)")
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="auto", help="tf.distribute strategy"
    )
    parser.add_argument(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="auto",
        help="Keras fit verbosity (auto: a progress bar)",
    )
    return parser


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separates ``--config.a.b=value`` / ``--config.a.b value`` from the other arguments.

    Args:
      argv: the arguments after the program name.

    Returns:
      (other arguments, [(dotted field name, value text)] in order).

    Raises:
      ConfigError: an override without a value.
    """
    from gfla_tf.configs import ConfigError

    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(_OVERRIDE):
            name, has_value, value = arg[len(_OVERRIDE) :].partition("=")
            if not has_value:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg} needs a value ({arg}=VALUE)")
                i += 1
                value = argv[i]
            overrides.append((name, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    """Parses ``argv`` (argv[0] = "gfla train") and trains; returns the exit status."""
    prog = argv[0]
    from gfla_tf.configs import ConfigError, load, override

    try:
        rest, overrides = split_overrides(argv[1:])
    except ConfigError as err:
        return _fail(prog, str(err), 2)
    args = _parser(prog).parse_args(rest)
    try:
        config = load(args.config)
        for name, value in overrides:
            override(config, name, value)
    except ConfigError as err:
        return _fail(prog, f"--config: {err}", 2)

    from gfla_tf.training import NonFiniteLossError, TrainingInterrupted, train

    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    try:
        result = train(config, args.workdir, strategy=args.strategy, verbose=verbose)
    except (NonFiniteLossError, ValueError) as err:
        return _fail(prog, str(err), 1)
    except TrainingInterrupted as err:
        return _fail(prog, str(err), 130)
    except KeyboardInterrupt:
        return _fail(
            prog, "interrupted before training started; the same command starts again", 130
        )
    except OSError as err:
        if err.errno == errno.ENOSPC:
            problem = f"disk full in {args.workdir} ({err.strerror})"
        else:
            problem = f"{err.strerror or str(err).splitlines()[0]}: {err.filename or args.workdir}"
        status = _fail(
            prog,
            f"{problem}; nothing half-written was kept: fix it and run the same command to "
            "resume from the newest intact state",
            1,
        )
        from gfla_tf.training import checkpoints

        if checkpoints.hdf5_write_failed():
            # HDF5 would crash at interpreter teardown (see checkpoints._write_weights).
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        return status
    if result.is_chief:
        print(
            f"trained stage {result.trainer.stage} to step {result.step}; outputs in {args.workdir}"
        )
    return 0
