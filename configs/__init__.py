"""Experiment configurations (ml_collections), installed as the package ``gfla_tf.configs``.

Where they live: the files stay at the top of a clone, in ``configs/``, so that the
README's ``--config configs/deepfashion.py`` works from a checkout; setup.py maps this
directory to the package ``gfla_tf.configs`` (``package_dir``), so an installed gfla-tf
imports them as ``from gfla_tf.configs import deepfashion`` and the command line also
accepts the built-in name (``--config deepfashion``). There is one copy: the clone's
directory is the package.

Each module has ``get_config(variant=None)``; ``variant`` is ``None`` (the full
configuration), ``"small"`` (CPU quickstart size) or ``"test"`` (tiny, for unit tests).
Every field is defined, with its one default and a comment, in ``base.py``; the other
modules only override values. Configs are locked: assigning a field that does not exist
raises an error naming it.

On the command line: ``--config configs/deepfashion.py`` or ``--config
configs/deepfashion.py:small``, overridden with ``--config.train.batch_size=4`` etc.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os

import ml_collections


class ConfigError(ValueError):
    """A config file, field or value given on the command line is wrong (one-line message)."""


def load(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py[:variant]`` or a built-in name (``deepfashion[:test]``).

    Args:
      spec: a config file path or a ``gfla_tf.configs`` module name, with an optional
        ``:variant`` suffix.

    Returns:
      The (locked) configuration.

    Raises:
      ConfigError: the file or module does not exist, has no ``get_config`` or rejects the
        variant.
    """
    path, _, variant = spec.partition(":")
    variant = variant or None
    if os.path.isfile(path):
        module_spec = importlib.util.spec_from_file_location("gfla_config_file", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        if not name.isidentifier() or name in ("base", "__init__"):
            raise ConfigError(f"no config file or built-in config named {path!r}")
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            raise ConfigError(f"no config file or built-in config named {path!r}") from err
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config(variant)")
    try:
        return module.get_config(variant)
    except ValueError as err:
        raise ConfigError(f"{spec}: {err}") from err


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """Maps every leaf field to its value, by dotted name (``train.steps``), in order."""
    fields = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            fields.update(flatten(value, name + "."))
        else:
            fields[name] = value
    return fields


def _parse(text: str, current):
    """Parses a command-line value as the type of the field's current value."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    value = ast.literal_eval(text)
    if isinstance(current, (tuple, list)):
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return value


def override(config: ml_collections.ConfigDict, name: str, text: str) -> None:
    """Sets the field ``name`` (dotted, e.g. ``train.steps``) of ``config`` from ``text``.

    Args:
      config: the configuration to change in place.
      name: dotted field name.
      text: the value as typed, parsed as the type of the field's current value.

    Raises:
      ConfigError: unknown field (with the closest known name) or a value of the wrong type.
    """
    fields = flatten(config)
    if name not in fields:
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean 'config.{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown config field 'config.{name}'{hint}")
    try:
        value = _parse(text, fields[name])
    except (ValueError, SyntaxError) as err:
        raise ConfigError(
            f"bad value {text!r} for config.{name} (a {type(fields[name]).__name__} like "
            f"{fields[name]!r}): {err}"
        ) from err
    *parents, leaf = name.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    try:
        setattr(node, leaf, value)
    except TypeError as err:
        raise ConfigError(f"bad value {text!r} for config.{name}: {err}") from err
