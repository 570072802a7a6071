"""Choosing a ``tf.distribute`` strategy for training."""

import json
import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def _cluster_size():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    return sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker"))


def build_strategy(name="auto"):
    """Creates the distribution strategy named ``name``.

    Args:
      name: "auto" (MultiWorkerMirrored when TF_CONFIG names several workers, Mirrored
        over all GPUs when there are several, else the default strategy), "default",
        "mirrored" (all GPUs, or all logical CPUs when there is no GPU), "multiworker"
        (cluster from TF_CONFIG) or "tpu" (TPU from the TPU_NAME environment variable,
        empty for a local TPU VM).

    Returns:
      A ``tf.distribute.Strategy``.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "auto":
        if _cluster_size() > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    elif name == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    logger.info(
        "strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync
    )
    return strategy


def is_tpu(strategy):
    """True for a TPUStrategy (the step must then avoid the custom op)."""
    return isinstance(strategy, (tf.distribute.TPUStrategy,))


def is_chief(strategy):
    """True for the process that writes checkpoints, logs and exports.

    Args:
      strategy: a ``tf.distribute.Strategy``.

    Returns:
      False only for non-chief workers of a multi-worker cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
