"""GFLA training: the two-stage trainer, distribution, checkpoints and the ``train`` loop.

``GFLATrainer`` is a ``keras.Model`` with its own ``compile``/``train_step``/``test_step``;
``train(config, workdir)`` runs a whole stage (``gfla train`` is a thin wrapper around it).
"""

from gfla_tf.training.callbacks import (
    EpochBackup,
    NonFiniteLossError,
    PeriodicCheckpoint,
    StopAtStep,
    TerminateOnNonFiniteLoss,
    TrainingLogger,
    sample_grid,
)
from gfla_tf.training.checkpoints import (
    ResumeState,
    latest_checkpoint,
    load_config,
    load_flow_estimator,
    restore_latest,
    restore_trainer,
    save_checkpoint,
    save_config,
)
from gfla_tf.training.compat import DistributedFitMixin
from gfla_tf.training.loop import (
    TrainingInterrupted,
    TrainResult,
    build_trainer,
    save_generator,
    train,
)
from gfla_tf.training.schedules import LinearDecayTail
from gfla_tf.training.strategy import build_strategy, is_chief
from gfla_tf.training.trainer import GFLATrainer, required_vgg_layers

__all__ = [
    "DistributedFitMixin",
    "EpochBackup",
    "GFLATrainer",
    "LinearDecayTail",
    "NonFiniteLossError",
    "PeriodicCheckpoint",
    "ResumeState",
    "StopAtStep",
    "TerminateOnNonFiniteLoss",
    "TrainResult",
    "TrainingInterrupted",
    "TrainingLogger",
    "build_strategy",
    "build_trainer",
    "is_chief",
    "latest_checkpoint",
    "load_config",
    "load_flow_estimator",
    "required_vgg_layers",
    "restore_latest",
    "restore_trainer",
    "sample_grid",
    "save_checkpoint",
    "save_config",
    "save_generator",
    "train",
]
