"""Versioned, atomic SavedModel export of a GFLA generator for TensorFlow Serving.

TF Serving watches a base directory and loads every child whose name is an integer
version. An export is therefore written into ``<base>/.tmp-export-*`` (a name TF Serving
ignores) and renamed to ``<base>/<version>`` only once it is complete, so a failed export
leaves nothing that looks like a model, and an existing version is never overwritten.

The graph goes through ``gfla_tf.models.clone_with_impl(generator, "reference")``, so it
holds only stock TensorFlow ops and loads in a process that never imports ``gfla_tf``.
"""

import json
import logging
import os
import re
import shutil
import tempfile

import tensorflow as tf

from gfla_tf.export import signatures

_log = logging.getLogger(__name__)

METADATA_FILE = "gfla_export.json"
_TMP_PREFIX = ".tmp-export-"
_VERSION_RE = re.compile(r"^[0-9]+$")


def list_versions(base_dir):
    """Returns the sorted integer versions present under a TF Serving base directory."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(name) for name in os.listdir(base_dir) if _VERSION_RE.match(name))


def next_version(base_dir):
    """Returns 1 + the highest numeric version under ``base_dir``, or 1 if there is none."""
    existing = list_versions(base_dir)
    return existing[-1] + 1 if existing else 1


def generator_image_size(generator):
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


def _num_keypoints(generator):
    if getattr(generator, "num_keypoints", None) is not None:
        return int(generator.num_keypoints)
    config = getattr(generator, "model_config", None)
    if config is not None and "num_keypoints" in config:
        return int(config["num_keypoints"])
    return 18


def _reference_clone(generator):
    """Returns the generator rebuilt on the pure-TF op path (same weights)."""
    from gfla_tf.models import GFLAGenerator, clone_with_impl

    if not isinstance(generator, GFLAGenerator):
        # Another model following the contract has no op implementation to switch.
        return generator
    return clone_with_impl(generator, "reference")


def build_module(generator, image_size=None, sigma=signatures.DEFAULT_SIGMA, reference=True):
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
    num_keypoints = _num_keypoints(generator)
    model = _reference_clone(generator) if reference else generator
    module = tf.__internal__.tracking.AutoTrackable()
    functions = signatures.build_functions(model, size, sigma=sigma, num_keypoints=num_keypoints)
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
        "num_keypoints": num_keypoints,
        "attention_scales": [int(s) for s in getattr(generator, "attention_scales", [])],
        "kernel_sizes": [int(k) for k in getattr(generator, "kernel_sizes", [])],
        "signatures": sorted(concrete),
    }
    try:
        import gfla_tf

        metadata["gfla_tf_version"] = gfla_tf.__version__
    except (ImportError, AttributeError):
        pass
    return module, concrete, metadata


def write_saved_model(generator, path, image_size=None, sigma=signatures.DEFAULT_SIGMA):
    """Writes a SavedModel at ``path`` (not versioned, not atomic; ``path`` must not exist).

    Returns:
      ``path``.
    """
    module, concrete, metadata = build_module(generator, image_size=image_size, sigma=sigma)
    tf.saved_model.save(module, path, signatures=concrete)
    # assets.extra is copied along by TF Serving but never read as part of the graph.
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return path


def export_saved_model(generator, output_dir, version=None, *, image_size=None, sigma=None):
    """Exports ``generator`` as ``output_dir/<version>/``, the layout TF Serving scans.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract, or a path to a
        ``.keras`` file.
      output_dir: the model base directory (created if missing).
      version: positive integer version; default one more than the highest existing
        version, or 1.
      image_size: (height, width); inferred from the generator when None.
      sigma: heatmap sigma in pixels; default 6.0 (or the generator's data config).

    Returns:
      The path of the new version directory.

    Raises:
      FileExistsError: if ``output_dir/<version>`` already exists.
      ValueError: if ``version`` is not a positive integer.
    """
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
    if isinstance(generator, (str, os.PathLike)):
        from gfla_tf.export.loading import load_generator

        generator = load_generator(generator)
    if sigma is None:
        sigma = float(getattr(generator, "heatmap_sigma", signatures.DEFAULT_SIGMA))
    os.makedirs(output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=output_dir)
    try:
        write_saved_model(generator, os.path.join(tmp, "model"), image_size=image_size, sigma=sigma)
        if os.path.exists(final):  # another exporter won the race
            raise FileExistsError(f"{final} appeared during the export; not overwriting it")
        os.rename(os.path.join(tmp, "model"), final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _log.info("exported SavedModel version %d to %s", version, final)
    return final


def resolve_saved_model_dir(path):
    """Maps a TF Serving base directory to its highest version; a SavedModel to itself.

    Raises:
      FileNotFoundError: if ``path`` holds neither a SavedModel nor numbered versions.
    """
    if tf.saved_model.contains_saved_model(path):
        return path
    versions = list_versions(path)
    for version in reversed(versions):
        candidate = os.path.join(path, str(version))
        if tf.saved_model.contains_saved_model(candidate):
            return candidate
    raise FileNotFoundError(f"no SavedModel (or numbered version of one) found at {path}")


def read_metadata(saved_model_dir):
    """Returns the export metadata dict of a SavedModel written here, or {} if absent."""
    path = os.path.join(saved_model_dir, "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
