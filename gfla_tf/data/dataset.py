"""The DeepFashion / Market-1501 / synthetic input pipeline and its pre-flight check.

Dataset layout under the root (as the community distributes the GFLA data)::

    train/  test/                               images
    fashion-annotation-{train,test}.csv         name:keypoints_y:keypoints_x
    fashion-pairs-{train,test}.csv              from,to

(``fasion-`` is accepted for DeepFashion, ``market-`` is the Market-1501 prefix; the
synthetic dataset adds ``flows/<split>/<from>___<to>.png``). Keypoints are in the
annotation frame (``config.data.annotation_height/width``) and are scaled to the load
size with the image, which is squashed to it.

Bad data never trains silently: ``scan_dataset`` checks every pair before the tf.data
graph is built (files present, image headers readable, files not truncated, annotation
rows well formed, pairs naming annotated images) and ``build_dataset`` stops with the full
list of problems (``on_bad_data="stop"``) or drops the affected pairs and logs the counts
(``"skip"``).
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from gfla_tf.data import augment as augment_lib
from gfla_tf.data import flow as flow_lib
from gfla_tf.data import keypoints as kp
from gfla_tf.data import synthetic

logger = logging.getLogger(__name__)

KINDS = ("deepfashion", "market", "synthetic")
SPLITS = ("train", "test")
PREFIXES = {
    "deepfashion": ("fashion", "fasion"),
    "synthetic": ("fashion", "fasion"),
    "market": ("market",),
}
# Annotation frames of the distributed annotations (height, width).
ANNOTATION_SIZES = {"deepfashion": (256, 176), "market": (128, 64)}


class DataError(RuntimeError):
    """The dataset has problems and ``on_bad_data`` is "stop"; the message lists them."""


@dataclasses.dataclass
class ScanReport:
    """Result of ``scan_dataset``.

    Attributes:
      root: dataset root.
      kind: deepfashion, market or synthetic.
      split: train or test.
      annotation_file: the annotation CSV found (or None).
      pairs_file: the pairs CSV found (or None).
      num_annotated: images with a well-formed annotation row.
      num_pairs_listed: rows of the pairs CSV.
      num_images_checked: image files whose header and ending were checked.
      pairs: the usable pairs, (source name, target name).
      keypoints: name -> [18, 2] (x, y) in the annotation frame.
      problems: every problem found, one line each.
      fatal: True when the split cannot be read at all (missing CSV or bad header).
    """

    root: str
    kind: str
    split: str
    annotation_file: str = None
    pairs_file: str = None
    num_annotated: int = 0
    num_pairs_listed: int = 0
    num_images_checked: int = 0
    pairs: list = dataclasses.field(default_factory=list)
    keypoints: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)
    fatal: bool = False

    def summary(self):
        """A multi-line human-readable report with the counts and every problem."""
        lines = [
            f"dataset {self.root} ({self.kind}, {self.split})",
            f"  annotation file: {self.annotation_file or 'MISSING'}",
            f"  pairs file:      {self.pairs_file or 'MISSING'}",
            f"  annotated images: {self.num_annotated}",
            f"  images checked:   {self.num_images_checked}",
            f"  pairs listed:     {self.num_pairs_listed}",
            f"  usable pairs:     {len(self.pairs)}",
            f"  problems:         {len(self.problems)}",
        ]
        lines.extend(f"    - {p}" for p in self.problems)
        return "\n".join(lines)


def find_split_files(root, kind, split):
    """Locates the annotation and pairs CSVs of a split.

    Args:
      root: dataset root.
      kind: deepfashion, market or synthetic.
      split: train or test.

    Returns:
      ``(annotation_path or None, pairs_path or None)``.
    """
    _check_kind_split(kind, split)
    found = {}
    for what in ("annotation", "pairs"):
        for prefix in PREFIXES[kind]:
            path = os.path.join(root, f"{prefix}-{what}-{split}.csv")
            if os.path.isfile(path):
                found[what] = path
                break
    return found.get("annotation"), found.get("pairs")


def _check_kind_split(kind, split):
    if kind not in KINDS:
        raise ValueError(f"data kind must be one of {KINDS}, got {kind!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_image_file(path):
    """Fast check of one image file without decoding the pixels.

    Reads the header with PIL (format, size) and checks the end-of-file marker of PNG and
    JPEG files, which catches truncated downloads.

    Args:
      path: image path.

    Returns:
      None when the file looks good, else a problem description.
    """
    if not os.path.isfile(path):
        return f"{path}: image file missing"
    try:
        with Image.open(path) as image:
            fmt = image.format
            width, height = image.size
    except Exception as err:  # PIL raises many types for unreadable files
        return f"{path}: not a readable image ({type(err).__name__}: {err})"
    if width < 1 or height < 1:
        return f"{path}: empty image ({width}x{height})"
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 1024))
        tail = f.read()
    if fmt == "PNG" and b"IEND" not in tail:
        return f"{path}: truncated PNG (no IEND chunk at the end)"
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return f"{path}: truncated JPEG (no end-of-image marker)"
    return None


def _read_pairs(path, problems):
    pairs = []
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or [c.strip() for c in lines[0].split(",")] != ["from", "to"]:
        raise kp.KeypointFormatError(
            f"{path}: expected the header 'from,to', got {lines[0] if lines else ''!r}"
        )
    for row_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [c.strip() for c in line.split(",")]
        if len(fields) != 2 or not all(fields):
            problems.append(f"{path}, row {row_number}: expected 'from,to', got {line!r}")
            continue
        pairs.append(tuple(fields))
    return pairs


def scan_dataset(root, kind, split, check_images=True):
    """Checks a split before training: CSVs, rows, pairs and image (and flow) files.

    Args:
      root: dataset root.
      kind: deepfashion, market or synthetic.
      split: train or test.
      check_images: also open every image header used by a pair (fast, no decode).

    Returns:
      A ``ScanReport``; ``report.pairs`` holds only the pairs without problems.
    """
    root = os.fspath(root)
    _check_kind_split(kind, split)
    report = ScanReport(root=root, kind=kind, split=split)
    if not os.path.isdir(root):
        report.problems.append(f"{root}: dataset root not found")
        report.fatal = True
        return report
    report.annotation_file, report.pairs_file = find_split_files(root, kind, split)
    prefix = PREFIXES[kind][0]
    for what, path in (("annotation", report.annotation_file), ("pairs", report.pairs_file)):
        if path is None:
            report.problems.append(
                f"{os.path.join(root, f'{prefix}-{what}-{split}.csv')}: {what} CSV missing"
            )
            report.fatal = True
    if report.fatal:
        return report
    try:
        report.keypoints, row_problems = kp.read_annotation_csv(
            report.annotation_file, strict=False
        )
        report.problems.extend(row_problems)
        listed = _read_pairs(report.pairs_file, report.problems)
    except kp.KeypointFormatError as err:
        report.problems.append(str(err))
        report.fatal = True
        return report
    report.num_annotated = len(report.keypoints)
    report.num_pairs_listed = len(listed)
    image_dir = os.path.join(root, split)
    if not os.path.isdir(image_dir):
        report.problems.append(f"{image_dir}: image folder missing")
        report.fatal = True
        return report
    image_status = {}

    def image_ok(name):
        if name not in image_status:
            problem = None
            if name not in report.keypoints:
                problem = f"{report.pairs_file}: pair names {name!r}, which has no annotation"
            elif check_images:
                problem = check_image_file(os.path.join(image_dir, name))
            if problem:
                report.problems.append(problem)
            image_status[name] = problem is None
        return image_status[name]

    for source, target in listed:
        ok = image_ok(source) & image_ok(target)
        if ok and kind == "synthetic":
            path = synthetic.flow_path(root, split, source, target)
            if not os.path.isfile(path):
                report.problems.append(f"{path}: flow file missing")
                ok = False
        if ok:
            report.pairs.append((source, target))
    report.num_images_checked = len(image_status) if check_images else 0
    return report


def default_synthetic_root(data_config):
    """Where a synthetic dataset with an empty ``root`` is cached."""
    base = os.environ.get("GFLA_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "gfla"
    )
    return os.path.join(
        base,
        f"synthetic-{data_config.synthetic_size}px-{data_config.synthetic_pairs}p-"
        f"{data_config.synthetic_test_pairs}t-seed{data_config.synthetic_seed}",
    )


def resolve_root(data_config):
    """The dataset root; for the synthetic kind, generates the dataset when needed.

    A synthetic ``root`` that already holds a complete synthetic dataset is used as is;
    an empty ``root`` means a cache folder (``$GFLA_DATA_DIR`` or ``~/.cache/gfla``).

    Args:
      data_config: the ``config.data`` ConfigDict.

    Returns:
      The root path.

    Raises:
      ValueError: for a real dataset kind without a root.
    """
    root = data_config.root
    if data_config.kind != "synthetic":
        if not root:
            raise ValueError(
                f"config.data.root is empty: set it to the {data_config.kind} dataset folder"
            )
        return os.fspath(root)
    root = os.fspath(root) if root else default_synthetic_root(data_config)
    if synthetic.read_manifest(root) is None:
        synthetic.generate_from_config(data_config, root, data_config.synthetic_seed)
    return root


def _annotation_size(data_config, root):
    if data_config.kind == "synthetic":
        manifest = synthetic.read_manifest(root)
        if manifest is not None:
            return manifest["size"], manifest["size"]
    return int(data_config.annotation_height), int(data_config.annotation_width)


def load_split(data_config, split, root=None):
    """Scans a split and applies ``on_bad_data``; returns the clean ``ScanReport``.

    Args:
      data_config: ``config.data``.
      split: train or test.
      root: dataset root (default: ``resolve_root(data_config)``).

    Returns:
      The ``ScanReport`` whose ``pairs`` are all usable.

    Raises:
      DataError: if problems were found and ``on_bad_data`` is "stop", if the split cannot
        be read at all, or if no usable pair remains.
      ValueError: for an unknown ``on_bad_data``.
    """
    policy = data_config.on_bad_data
    if policy not in ("stop", "skip"):
        raise ValueError(f"config.data.on_bad_data must be 'stop' or 'skip', got {policy!r}")
    root = resolve_root(data_config) if root is None else root
    report = scan_dataset(root, data_config.kind, split, check_images=bool(data_config.scan_images))
    if report.fatal or (report.problems and policy == "stop"):
        raise DataError(
            "the dataset has problems; fix them or set config.data.on_bad_data='skip' "
            "(run 'gfla data check' for this report)\n" + report.summary()
        )
    if report.problems:
        logger.warning(
            "%s %s: skipping %d of %d pairs (%d problems; first: %s)",
            root,
            split,
            report.num_pairs_listed - len(report.pairs),
            report.num_pairs_listed,
            len(report.problems),
            report.problems[0],
        )
    if not report.pairs:
        raise DataError(f"no usable pairs in {root} ({split})\n" + report.summary())
    return report


def build_dataset(
    data_config,
    split,
    batch_size,
    image_size,
    *,
    shuffle=None,
    repeat=None,
    drop_remainder=None,
    input_context=None,
    with_names=False,
):
    """Builds the tf.data pipeline of source/target pairs.

    Yields dict batches: ``source_image``, ``target_image`` ([B, H, W, 3] float32 in
    [-1, 1]), ``source_pose``, ``target_pose`` ([B, H, W, 18] heatmaps),
    ``source_keypoints``, ``target_keypoints`` ([B, 18, 2] (x, y) pixels at image_size,
    negative = missing) and, for the synthetic kind, ``flow`` ([B, H, W, 2], target ->
    source, pixels) and ``visibility`` ([B, H, W, 1] in {0, 1}).

    Args:
      data_config: ``config.data`` (kind, root, annotation size, sigma, augment,
        shuffle_buffer, deterministic, on_bad_data, seed, synthetic_*).
      split: "train" or "test".
      batch_size: global batch size; with ``input_context`` each input pipeline batches
        the per-replica size.
      image_size: (height, width) to load at.
      shuffle: shuffle the pairs (default: True for train).
      repeat: repeat forever (default: True for train).
      drop_remainder: drop the last partial batch (default: True for train).
      input_context: a ``tf.distribute.InputContext`` (multi-worker sharding).
      with_names: also yield ``source_name`` and ``target_name`` (string tensors).

    Returns:
      A ``tf.data.Dataset``.

    Raises:
      DataError: on dataset problems (see ``load_split``).
      ValueError: on a bad argument.
    """
    _check_kind_split(data_config.kind, split)
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be (height, width) > 0, got {image_size!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    is_train = split == "train"
    shuffle = is_train if shuffle is None else shuffle
    repeat = is_train if repeat is None else repeat
    drop_remainder = is_train if drop_remainder is None else drop_remainder
    augment = bool(data_config.augment) and is_train
    has_flow = data_config.kind == "synthetic"
    if augment and has_flow:
        raise ValueError("config.data.augment is not supported with ground-truth flow")
    deterministic = bool(data_config.deterministic)
    seed = int(data_config.seed)

    root = resolve_root(data_config)
    report = load_split(data_config, split, root)
    frame = _annotation_size(data_config, root)
    image_dir = os.path.join(root, split)
    sources = [p[0] for p in report.pairs]
    targets = [p[1] for p in report.pairs]
    tensors = {
        "source_name": np.array(sources),
        "target_name": np.array(targets),
        "source_path": np.array([os.path.join(image_dir, n) for n in sources]),
        "target_path": np.array([os.path.join(image_dir, n) for n in targets]),
        "source_keypoints": kp.scale_keypoints(
            np.stack([report.keypoints[n] for n in sources]), frame, (height, width)
        ),
        "target_keypoints": kp.scale_keypoints(
            np.stack([report.keypoints[n] for n in targets]), frame, (height, width)
        ),
    }
    if has_flow:
        tensors["flow_path"] = np.array(
            [synthetic.flow_path(root, split, s, t) for s, t in report.pairs]
        )
    num_pairs = len(sources)
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    per_replica_batch = int(batch_size)
    if input_context is not None:
        per_replica_batch = input_context.get_per_replica_batch_size(int(batch_size))
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        num_pairs = -(-num_pairs // input_context.num_input_pipelines)
    if shuffle:
        buffer = int(data_config.shuffle_buffer)
        buffer = num_pairs if buffer <= 0 else min(buffer, num_pairs)
        ds = ds.shuffle(
            max(buffer, 1), seed=seed if deterministic else None, reshuffle_each_iteration=True
        )
    if repeat:
        ds = ds.repeat()
    aug_seed = seed if deterministic else int(np.random.SeedSequence().entropy % (2**31))
    ds = ds.enumerate()

    def load(index, item):
        def image(path):
            data = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            data = _resize(tf.cast(data, tf.float32), height, width)
            data.set_shape((height, width, 3))
            return data / 127.5 - 1.0

        out = {
            "source_image": image(item["source_path"]),
            "target_image": image(item["target_path"]),
            "source_keypoints": item["source_keypoints"],
            "target_keypoints": item["target_keypoints"],
        }
        if augment:
            (
                out["source_image"],
                out["target_image"],
                out["source_keypoints"],
                out["target_keypoints"],
            ) = augment_lib.augment_pair(
                out["source_image"],
                out["target_image"],
                out["source_keypoints"],
                out["target_keypoints"],
                tf.stack([tf.constant(aug_seed, tf.int64), index]),
                max_angle=float(data_config.augment_angle),
                max_shift=float(data_config.augment_shift),
                scale_range=tuple(data_config.augment_scale),
            )
        if has_flow:
            out["flow"], out["visibility"] = _load_flow(item["flow_path"], height, width)
        if with_names:
            out["source_name"] = item["source_name"]
            out["target_name"] = item["target_name"]
        return out

    sigma = float(data_config.sigma)

    def add_heatmaps(batch):
        batch["source_pose"] = kp.keypoints_to_heatmaps(
            batch["source_keypoints"], height, width, sigma
        )
        batch["target_pose"] = kp.keypoints_to_heatmaps(
            batch["target_keypoints"], height, width, sigma
        )
        return batch

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if data_config.on_bad_data == "skip":
        # A file that passed the header scan can still fail to decode.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(per_replica_batch, drop_remainder=drop_remainder)
    ds = ds.map(add_heatmaps, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)


def _resize(image, height, width, method="bilinear"):
    """Resizes to (height, width); antialiased only when shrinking, where it matters."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    shrink = tf.logical_or(shape[0] > height, shape[1] > width)
    return tf.cond(
        same,
        lambda: image,
        lambda: tf.cond(
            shrink,
            lambda: tf.image.resize(image, (height, width), method, antialias=True),
            lambda: tf.image.resize(image, (height, width), method),
        ),
    )


def _load_flow(path, height, width):
    data = tf.io.decode_png(tf.io.read_file(path), channels=3, dtype=tf.uint16)
    flow, visibility = flow_lib.decode_flow_png(data)
    shape = tf.shape(flow)
    stored_h, stored_w = shape[0], shape[1]

    def resized():
        scale = tf.stack(
            [
                tf.cast(width, tf.float32) / tf.cast(stored_w, tf.float32),
                tf.cast(height, tf.float32) / tf.cast(stored_h, tf.float32),
            ]
        )
        # Positions and displacements scale with the image; visibility by majority.
        new_flow = _resize(flow, height, width) * scale
        new_vis = tf.image.resize(visibility, (height, width), method="area")
        return new_flow, tf.cast(new_vis >= 0.5, tf.float32)

    same = tf.logical_and(tf.equal(stored_h, height), tf.equal(stored_w, width))
    flow, visibility = tf.cond(same, lambda: (flow, visibility), resized)
    flow.set_shape((height, width, 2))
    visibility.set_shape((height, width, 1))
    return flow, visibility
