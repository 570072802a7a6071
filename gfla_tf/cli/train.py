"""``gfla train``: train one stage of GFLA from a config file.

Example::

    gfla train --config configs/deepfashion.py --workdir runs/df_stage1
    gfla train --config configs/deepfashion.py --workdir runs/df_stage2 \\
        --config.train.stage=2 --config.train.stage1_checkpoint=runs/df_stage1
    gfla train --config configs/synthetic.py:test --workdir /tmp/run --strategy mirrored

Running the same command again after an interruption (even ``kill -9``) resumes from the
last completed epoch. Multi-worker training reads the cluster from ``TF_CONFIG``.
"""

import logging
import sys

from absl import flags
from ml_collections import config_flags

logger = logging.getLogger(__name__)


def _flag_values():
    # A private FlagValues per call: the dispatcher may run several commands (and tests
    # several parses) in one process.
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file (configs/deepfashion.py, optionally ':small' or ':test'); override "
        "fields with --config.train.batch_size=4 etc.",
        flag_values=values,
        lock_config=True,
    )
    flags.DEFINE_string(
        "workdir", None, "Run directory (checkpoints, logs, backup).", flag_values=values
    )
    flags.DEFINE_enum(
        "strategy",
        "auto",
        ["auto", "default", "mirrored", "multiworker", "tpu"],
        "tf.distribute strategy.",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "verbose", "auto", ["auto", "0", "1", "2"], "Keras fit verbosity.", flag_values=values
    )
    return values


def main(argv):
    """Parses ``argv`` (argv[0] = "gfla train") and trains; returns the exit status."""
    values = _flag_values()
    try:
        values(argv)
    except flags.Error as err:
        print(f"{argv[0]}: {err}\n\nRun '{argv[0]} --helpfull' for the options.", file=sys.stderr)
        return 2
    if values.config is None or not values.workdir:
        print(f"{argv[0]}: --config and --workdir are required", file=sys.stderr)
        return 2

    from gfla_tf.training import NonFiniteLossError, train

    verbose = values.verbose if values.verbose == "auto" else int(values.verbose)
    try:
        result = train(values.config, values.workdir, strategy=values.strategy, verbose=verbose)
    except NonFiniteLossError as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1
    step = int(result.trainer.optimizer.iterations.numpy())
    if result.is_chief:
        print(f"trained stage {result.trainer.stage} to step {step}; outputs in {values.workdir}")
    return 0
