"""Versioned, atomic SavedModel export of a GFLA generator for TensorFlow Serving.

TF Serving watches a base directory and loads every child whose name is an integer
version. An export is therefore written into ``<base>/.tmp-*`` (a name TF Serving ignores,
see ``gfla_tf.io.atomic_directory``) and renamed to ``<base>/<version>`` only once it is complete, so a failed export
leaves nothing that looks like a model, and an existing version is never overwritten.

The graph goes through ``gfla_tf.models.clone_with_impl(generator, "reference")``, so it
holds only stock TensorFlow ops and loads in a process that never imports ``gfla_tf``.

The image size and heatmap sigma come from the model's training ``config.json`` when
there is one (:func:`serving_settings`), and are recorded in
``assets.extra/gfla_export.json`` for the predictors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

import gfla_tf
from gfla_tf import io
from gfla_tf.export import signatures
from gfla_tf.export.loading import ModelSettings, load_generator, model_settings

_log = logging.getLogger(__name__)

METADATA_FILE = "gfla_export.json"
_VERSION_RE = re.compile(r"^[0-9]+$")


def list_versions(base_dir: str | os.PathLike) -> list[int]:
    """Returns the sorted integer versions present under a TF Serving base directory."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(name) for name in os.listdir(base_dir) if _VERSION_RE.match(name))


def next_version(base_dir: str | os.PathLike) -> int:
    """Returns 1 + the highest numeric version under ``base_dir``, or 1 if there is none."""
    existing = list_versions(base_dir)
    return existing[-1] + 1 if existing else 1


def generator_image_size(generator: Any) -> tuple[int, int]:
    """Returns the (height, width) a generator takes.

    Looks at ``generator.image_size``, ``generator.image_height`` / ``image_width``, then
    ``generator.model_config``, then the static
    shape of the ``source_image`` input of a functional model.

    Raises:
      ValueError: if the size cannot be determined; pass ``image_size`` explicitly then.
    """
    size = getattr(generator, "image_size", None)
    if size is not None:
        return int(size[0]), int(size[1])
    height = getattr(generator, "image_height", None)
    width = getattr(generator, "image_width", None)
    if height is not None and width is not None:
        return int(height), int(width)
    config = getattr(generator, "model_config", None)
    if config is not None and "image_height" in config:
        return int(config["image_height"]), int(config["image_width"])
    inputs = getattr(generator, "inputs", None)
    if isinstance(inputs, dict) and "source_image" in inputs:
        shape = inputs["source_image"].shape
        if shape[1] is not None and shape[2] is not None:
            return int(shape[1]), int(shape[2])
    if isinstance(inputs, (list, tuple)):
        for tensor in inputs:
            name = getattr(tensor, "name", "") or ""
            if "source_image" in name and tensor.shape[1] is not None:
                return int(tensor.shape[1]), int(tensor.shape[2])
    raise ValueError(
        "cannot determine the image size of the generator; pass image_size=(height, width)"
    )


def num_keypoints(generator: Any) -> int:
    """Returns the keypoints per pose a generator takes (18 unless it says otherwise)."""
    if getattr(generator, "num_keypoints", None) is not None:
        return int(generator.num_keypoints)
    config = getattr(generator, "model_config", None)
    if config is not None and "num_keypoints" in config:
        return int(config["num_keypoints"])
    return 18


def serving_settings(
    generator: Any,
    model_path: str | os.PathLike | None = None,
    *,
    image_size: tuple[int, int] | None = None,
    sigma: float | None = None,
) -> ModelSettings:
    """Decides the image size, heatmap sigma and keypoint count to serve a generator with.

    The training run's ``config.json`` beside ``model_path`` is the source of truth: its
    sigma is used, and an image size or sigma that contradicts it is an error (a sigma
    other than the training one gives silently wrong heatmaps). Without a saved config,
    ``sigma`` or the default 6.0 is used (with a warning when a model path was given, as
    its config was expected).

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      model_path: the ``.keras`` file or work directory the generator came from, if any.
      image_size: (height, width); default the generator's own.
      sigma: heatmap sigma in pixels; default the training config's.

    Returns:
      A ``ModelSettings``; ``source`` says where the sigma came from.

    Raises:
      ValueError: if ``image_size`` or ``sigma`` contradicts the saved training config.
    """
    size = tuple(int(v) for v in image_size) if image_size else generator_image_size(generator)
    keypoints = num_keypoints(generator)
    saved = model_settings(model_path) if model_path is not None else None
    if saved is not None:
        if saved.image_size != size or saved.num_keypoints != keypoints:
            raise ValueError(
                f"the model takes {size[0]}x{size[1]} images with {keypoints} keypoints but "
                f"its training config {saved.source} says {saved.image_size[0]}x"
                f"{saved.image_size[1]} with {saved.num_keypoints}"
            )
        if sigma is not None and float(sigma) != saved.sigma:
            raise ValueError(
                f"sigma {float(sigma):g} contradicts the training config {saved.source} "
                f"(data.sigma = {saved.sigma:g}); leave it out to use the trained value"
            )
        return saved
    if sigma is None:
        if model_path is not None:
            _log.warning(
                "no training config.json next to %s: using the default heatmap sigma %g "
                "(pass the sigma the model was trained with if it differs)",
                model_path,
                signatures.DEFAULT_SIGMA,
            )
        return ModelSettings(size, signatures.DEFAULT_SIGMA, keypoints, "default")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be positive pixels, got {sigma!r}")
    return ModelSettings(size, float(sigma), keypoints, "argument")


def _reference_clone(generator: Any) -> Any:
    """Returns the generator rebuilt on the pure-TF op path (same weights)."""
    from gfla_tf.models import GFLAGenerator, clone_with_impl

    if not isinstance(generator, GFLAGenerator):
        # Another model following the contract has no op implementation to switch.
        return generator
    return clone_with_impl(generator, "reference")


def build_module(
    generator: Any,
    image_size: tuple[int, int] | None = None,
    sigma: float = signatures.DEFAULT_SIGMA,
    reference: bool = True,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Builds the ``tf.Module`` that is saved: the generator's variables and both signatures.

    Only the captured variables are tracked (not the Keras objects), so the SavedModel
    holds the two serving functions and nothing Keras-specific.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width); inferred from the generator when None.
      sigma: heatmap Gaussian standard deviation in pixels (``config.data.sigma``).
      reference: clone the generator onto the pure-TF op path first.

    Returns:
      (module, {signature name: concrete function}, metadata dict).
    """
    size = tuple(image_size) if image_size is not None else generator_image_size(generator)
    keypoints = num_keypoints(generator)
    model = _reference_clone(generator) if reference else generator
    module = tf.__internal__.tracking.AutoTrackable()
    functions = signatures.build_functions(model, size, sigma=sigma, num_keypoints=keypoints)
    # heatmaps first: traced at top level its captures are the variables themselves, and
    # serving_default then calls that same trace (a nested first trace would capture
    # them through the outer graph, which TF1-style session loading cannot restore).
    concrete = {}
    for name in (signatures.HEATMAP_SIGNATURE, signatures.SERVING_DEFAULT):
        concrete[name] = functions[name].get_concrete_function()
    # Track the tf.Variables the traced functions capture (not the Keras wrappers around
    # them): TF Serving's session loader restores exactly these.
    captured = {}
    for fn in concrete.values():
        for variable in fn.variables:
            captured.setdefault(id(variable), variable)
    module.variables = list(captured.values())
    module.serving_default = functions[signatures.SERVING_DEFAULT]
    module.heatmaps = functions[signatures.HEATMAP_SIGNATURE]
    metadata = {
        "format": "gfla-tf",
        "image_height": size[0],
        "image_width": size[1],
        "sigma": float(sigma),
        "num_keypoints": keypoints,
        "attention_scales": [int(s) for s in getattr(generator, "attention_scales", [])],
        "kernel_sizes": [int(k) for k in getattr(generator, "kernel_sizes", [])],
        "signatures": sorted(concrete),
        "gfla_tf_version": gfla_tf.__version__,
    }
    return module, concrete, metadata


class _DropRenameNotice(logging.Filter):
    """Drops TensorFlow's notice that every captured variable input gets renamed.

    ``tf.saved_model.save`` logs (through absl, at INFO) one line naming each of the ~200
    variable inputs of the serving functions, several kilobytes that look like a failure.
    The renaming is harmless: the signatures' own input names are unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Function `%s` contains input name(s)")


@contextlib.contextmanager
def _quiet_rename_notice() -> Iterator[None]:
    absl_logger = logging.getLogger("absl")
    quiet = not _log.isEnabledFor(logging.DEBUG)
    notice = _DropRenameNotice()
    if quiet:
        absl_logger.addFilter(notice)
    try:
        yield
    finally:
        absl_logger.removeFilter(notice)


def write_saved_model(
    generator: Any,
    path: str,
    image_size: tuple[int, int] | None = None,
    sigma: float = signatures.DEFAULT_SIGMA,
) -> str:
    """Writes a SavedModel at ``path`` (not versioned, not atomic; ``path`` may be empty).

    Returns:
      ``path``.
    """
    module, concrete, metadata = build_module(generator, image_size=image_size, sigma=sigma)
    with _quiet_rename_notice():
        tf.saved_model.save(module, path, signatures=concrete)
    # assets.extra is copied along by TF Serving but never read as part of the graph.
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return path


def export_saved_model(
    generator: Any,
    output_dir: str | os.PathLike,
    version: int | None = None,
    *,
    image_size: tuple[int, int] | None = None,
    sigma: float | None = None,
) -> str:
    """Exports ``generator`` as ``output_dir/<version>/``, the layout TF Serving scans.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract, or a path to a
        ``.keras`` file or a training work directory.
      output_dir: the model base directory (created if missing).
      version: positive integer version; default one more than the highest existing
        version, or 1.
      image_size: (height, width); default the generator's own.
      sigma: heatmap sigma in pixels; default the one in the training ``config.json``
        beside a model path (see :func:`serving_settings`), else 6.0.

    Returns:
      The path of the new version directory.

    Raises:
      FileExistsError: if ``output_dir/<version>`` already exists.
      ValueError: if ``version`` is not a positive integer, the model file is corrupt, or
        ``image_size`` / ``sigma`` contradict the model's training config.
      OSError: if ``output_dir`` cannot be written (e.g. PermissionError).
    """
    output_dir = os.fspath(output_dir)
    if version is None:
        version = next_version(output_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    final = os.path.join(output_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists; refusing to overwrite version {version} "
            "(choose another --version or remove it)"
        )
    model_path = None
    if isinstance(generator, (str, os.PathLike)):
        model_path = os.fspath(generator)
        generator = load_generator(model_path)
    settings = serving_settings(generator, model_path, image_size=image_size, sigma=sigma)
    # The temporary is a dot-name beside the versions, which TF Serving never loads; it
    # becomes <version> only once complete.
    try:
        with io.atomic_directory(final) as tmp:
            write_saved_model(generator, tmp, image_size=settings.image_size, sigma=settings.sigma)
    except PermissionError as err:
        raise PermissionError(
            err.errno, f"cannot write the export into {output_dir} ({err.strerror})"
        ) from None
    _log.info(
        "exported SavedModel version %d to %s (heatmap sigma %g from %s)",
        version,
        final,
        settings.sigma,
        settings.source,
    )
    return final


def is_saved_model(path: str | os.PathLike) -> bool:
    """True if ``path`` is a SavedModel or a TF Serving base directory holding one."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    try:
        resolve_saved_model_dir(path)
    except FileNotFoundError:
        return False
    return True


def resolve_saved_model_dir(path: str | os.PathLike) -> str:
    """Maps a TF Serving base directory to its highest version; a SavedModel to itself.

    Raises:
      FileNotFoundError: if ``path`` holds neither a SavedModel nor numbered versions.
    """
    path = os.fspath(path)
    if tf.saved_model.contains_saved_model(path):
        return path
    versions = list_versions(path)
    for version in reversed(versions):
        candidate = os.path.join(path, str(version))
        if tf.saved_model.contains_saved_model(candidate):
            return candidate
    raise FileNotFoundError(f"no SavedModel (or numbered version of one) found at {path}")


def read_metadata(saved_model_dir: str | os.PathLike) -> dict[str, Any]:
    """Returns the export metadata dict of a SavedModel written here, or {} if absent."""
    path = os.path.join(os.fspath(saved_model_dir), "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except ValueError as err:
        raise ValueError(f"{path}: corrupt export metadata ({err})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: export metadata must be a JSON object")
    return metadata
