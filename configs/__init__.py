"""Experiment configurations (ml_collections), installed as ``gfla_tf.configs``.

Each module has ``get_config(variant=None)``; ``variant`` is ``None`` (the full
configuration), ``"small"`` (CPU quickstart size) or ``"test"`` (tiny, for unit tests).
On the command line: ``--config configs/deepfashion.py`` or ``--config
configs/deepfashion.py:small``, overridden with ``--config.train.batch_size=4`` etc.
"""
