"""The built-in synthetic person dataset: renders people and writes them as a dataset.

The people, their flows and visibility come from ``gfla_tf.data.synthetic_render``. The
dataset is written in the DeepFashion layout (``train/``, ``test/``, annotation and pairs
CSVs) plus, per split, ``flows/<split>/<from>___<to>.png`` (16-bit flow PNGs, see
``gfla_tf.data.flow``) and ``masks/<split>/<image file name>`` (8-bit PNG person masks:
0 = background, otherwise the body part id of ``synthetic_render.PART_NAMES``), and a
``synthetic.json`` manifest written last. Generation goes to a temporary folder next to
the output and is renamed into place when complete, so an interrupted run never leaves a
dataset that looks complete.
"""

import json
import logging
import os
import time

import numpy as np
from PIL import Image

from gfla_tf import io
from gfla_tf.data import flow as flow_lib
from gfla_tf.data import keypoints as kp
from gfla_tf.data.synthetic_render import PART_NAMES, render_pair  # noqa: F401 (public API)

logger = logging.getLogger(__name__)

MANIFEST = "synthetic.json"
# Part of the reuse check: a dataset of another version is regenerated, never reused.
# 3: person masks, larger people with broader garments, optional identity pairs.
FORMAT_VERSION = 3


def _split_seed(seed, split):
    return [int(seed), 0 if split == "train" else 1]


def _write_png(path, image):
    Image.fromarray(image).save(path, compress_level=1)


def _generate_split(root, split, num_pairs, size, seed, identity_pairs=0, pose_change=1.0):
    """Renders and writes one split; returns the annotation dict and the pair list.

    ``identity_pairs`` extra pairs (the first images of the split, each paired with
    itself: zero flow, everything visible) follow the ordinary pairs.
    """
    for folder in (split, os.path.join("flows", split), os.path.join("masks", split)):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    annotations, pairs = {}, []
    num_identities = (num_pairs + 1) // 2
    for identity in range(num_identities):
        sample = render_pair(_split_seed(seed, split) + [identity], size, pose_change)
        names = [f"{split}_{identity:06d}_{k}.png" for k in range(2)]
        for name, image, points, ids in zip(
            names, sample["images"], sample["keypoints"], sample["part_ids"]
        ):
            _write_png(os.path.join(root, split, name), image)
            _write_png(os.path.join(root, "masks", split, name), ids.astype(np.uint8))
            annotations[name] = points
        directions = ((0, 1), (1, 0)) if 2 * identity + 1 < num_pairs else ((0, 1),)
        for i, j in directions:
            flow_lib.write_flow_png(
                flow_path(root, split, names[i], names[j]),
                sample["flows"][(i, j)],
                sample["visibility"][(i, j)],
            )
            pairs.append((names[i], names[j]))
    names = list(annotations)
    for name in names[: min(int(identity_pairs), len(names))]:
        flow_lib.write_flow_png(
            flow_path(root, split, name, name), np.zeros((size, size, 2)), np.ones((size, size))
        )
        pairs.append((name, name))
    kp.write_annotation_csv(os.path.join(root, f"fashion-annotation-{split}.csv"), annotations)
    with open(os.path.join(root, f"fashion-pairs-{split}.csv"), "w") as f:
        f.write("from,to\n")
        f.writelines(f"{a},{b}\n" for a, b in pairs)
    with open(os.path.join(root, f"{split}.lst"), "w") as f:
        f.writelines(f"{name}\n" for name in annotations)
    return annotations, pairs


def generate_from_config(data_config, root, seed, replace_synthetic=False):
    """``generate_dataset`` with the sizes of a ``config.data`` (``synthetic_*`` fields).

    Args:
      data_config: the ``config.data`` ConfigDict.
      root: the dataset root.
      seed: random seed of the dataset.
      replace_synthetic: for a folder the caller owns: regenerate a synthetic dataset of
        other parameters or an older generator version found at ``root`` instead of
        raising. Other content is never replaced.

    Returns:
      ``root`` as a string.

    Raises:
      FileExistsError: ``root`` holds other content (or a different synthetic dataset
        without ``replace_synthetic``).
    """
    return generate_dataset(
        root,
        data_config.synthetic_pairs,
        num_test_pairs=data_config.synthetic_test_pairs,
        size=data_config.synthetic_size,
        seed=seed,
        overwrite=replace_synthetic and read_manifest(root) is not None,
        identity_pairs=data_config.synthetic_identity_pairs,
        pose_change=data_config.synthetic_pose_change,
    )


def read_manifest(root):
    """Returns the manifest dict of a complete synthetic dataset at ``root``, else None."""
    path = os.path.join(os.fspath(root), MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == "gfla-synthetic" else None


def flow_path(root, split, source_name, target_name):
    """The flow file of a pair in a synthetic dataset."""
    stem = lambda name: os.path.splitext(name)[0]  # noqa: E731
    return os.path.join(root, "flows", split, f"{stem(source_name)}___{stem(target_name)}.png")


def mask_path(root, split, image_name):
    """The person mask of an image in a synthetic dataset (8-bit PNG, 0 = background)."""
    return os.path.join(root, "masks", split, image_name)


def read_mask(root, split, image_name):
    """Reads an image's person mask as a bool [H, W] array (True = person)."""
    with Image.open(mask_path(root, split, image_name)) as image:
        return np.asarray(image) > 0


def generate_dataset(
    out_dir,
    num_pairs,
    num_test_pairs=64,
    size=64,
    seed=0,
    overwrite=False,
    identity_pairs=0,
    pose_change=1.0,
    _interrupt_after=None,
):
    """Generates the synthetic person dataset in the DeepFashion layout, atomically.

    The dataset is rendered into a temporary folder next to ``out_dir`` and renamed into
    place once complete, with the ``synthetic.json`` manifest written last. When
    ``out_dir`` already holds a complete dataset with the same parameters it is reused.

    Args:
      out_dir: the dataset root to create.
      num_pairs: number of training pairs (each identity gives two images and the pairs
        in both directions).
      num_test_pairs: number of test pairs (separate identities).
      size: image size in pixels (square), 16 to 256.
      seed: random seed; the dataset is a deterministic function of the parameters.
      overwrite: replace an existing, different dataset (or other content) at
        ``out_dir``.
      identity_pairs: extra training pairs whose target is the source itself.
      pose_change: how far a pair's target pose is from its source pose, in (0, 1]: the
        target is ``t ~ U(0, pose_change)`` of the way to an independent pose in every
        joint angle and offset (``synthetic_render.sample_pose_pair``); 1 = independent.
      _interrupt_after: testing hook: raise KeyboardInterrupt after writing this split
        ("train"), to simulate an interrupted run.

    Returns:
      ``out_dir`` as a string.

    Raises:
      ValueError: on a bad size, pair count or pose change.
      FileExistsError: if ``out_dir`` exists with other content and not ``overwrite``.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 256:
        raise ValueError(f"size must be an integer from 16 to 256, got {size!r}")
    if int(num_pairs) < 1 or int(num_test_pairs) < 0:
        raise ValueError(
            f"num_pairs must be >= 1 and num_test_pairs >= 0, got {num_pairs}, {num_test_pairs}"
        )
    if not 0.0 < float(pose_change) <= 1.0:
        raise ValueError(f"pose_change must be in (0, 1], got {pose_change!r}")
    params = {
        "size": int(size),
        "num_pairs": int(num_pairs),
        "num_test_pairs": int(num_test_pairs),
        "seed": int(seed),
        "identity_pairs": int(identity_pairs),
        "pose_change": float(pose_change),
        "version": FORMAT_VERSION,
    }
    existing = read_manifest(out_dir)
    if existing is not None and all(existing.get(k) == v for k, v in params.items()):
        logger.info("reusing the synthetic dataset at %s", out_dir)
        return out_dir
    if os.path.exists(out_dir) and (existing is not None or os.listdir(out_dir)):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} exists and is not the requested synthetic dataset; pass "
                "overwrite=True (--overwrite) or choose another directory"
            )
    start = time.perf_counter()
    with io.atomic_directory(out_dir, overwrite=True) as tmp:
        _generate_split(
            tmp,
            "train",
            params["num_pairs"],
            params["size"],
            params["seed"],
            params["identity_pairs"],
            params["pose_change"],
        )
        if _interrupt_after == "train":
            raise KeyboardInterrupt("simulated interruption")
        if params["num_test_pairs"]:
            _generate_split(
                tmp,
                "test",
                params["num_test_pairs"],
                params["size"],
                params["seed"],
                pose_change=params["pose_change"],
            )
        manifest = dict(
            params,
            format="gfla-synthetic",
            layout="deepfashion",
            flow_encoding="16-bit PNG: channel c<2 = round(flow_c * 64) + 32768, channel 2 = visibility",
            mask_encoding="8-bit PNG masks/<split>/<image>: 0 = background, else the part id",
            part_names=list(PART_NAMES),
            keypoint_order="OpenPose COCO-18",
        )
        io.atomic_write_text(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=2) + "\n")
    elapsed = time.perf_counter() - start
    logger.info(
        "wrote %d + %d synthetic pairs at %dx%d to %s in %.1f s",
        params["num_pairs"],
        params["num_test_pairs"],
        size,
        size,
        out_dir,
        elapsed,
    )
    return out_dir
