"""Runs a generator over a test set and computes the paper's metrics; ``gfla evaluate``.

Order of work, so that failures come early: the metric networks are loaded first (a
missing LPIPS/Inception weights file fails before anything is generated), then the FID
reference statistics, then the model, then the test pairs are generated batch by batch.

Generation goes through ``gfla_tf.export.load_predictor`` (the same ``Predictor`` that
``gfla generate`` and serving use, for ``.keras``, SavedModel and TFLite alike) on the
host; the metric networks (LPIPS, Inception) and the per-pair metrics run under a
``tf.distribute`` strategy ("default" or "mirrored"), each replica taking its share of
the generated batch.
"""

import csv
import dataclasses
import glob
import heapq
import importlib.util
import io
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from gfla_tf import io as gfla_io
from gfla_tf.evaluation import fid as fid_lib
from gfla_tf.evaluation import flow_metrics, image_metrics, person_mask, report
from gfla_tf.evaluation.fid import FID, FID_PROTOCOLS, FeatureStatistics
from gfla_tf.evaluation.lpips import LPIPS
from gfla_tf.evaluation.protocol import Protocol
from gfla_tf.pretrained.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)

METRICS = ("ssim", "psnr", "lpips", "lpips_masked", "fid", "epe")
DATASET_KINDS = ("auto", "deepfashion", "market", "synthetic")
STRATEGIES = ("default", "mirrored")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass
class EvaluationOptions:
    """What ``evaluate`` computes and where it writes.

    Args:
      model: path of a ``.keras`` file, SavedModel directory or ``.tflite`` file.
      data: dataset root (DeepFashion/Market layout, or a synthetic dataset).
      out: output directory for ``metrics.json``, ``per_pair.csv`` and ``report.html``.
      metrics: metric names from METRICS; "epe" needs ground-truth flow (synthetic data).
      batch_size: global batch size.
      limit: evaluate only the first ``limit`` pairs (None = all).
      dataset: dataset kind, or "auto" to detect it from the files under ``data``.
      split: the split to evaluate.
      lpips_weights: LPIPS weights file or "default" (see ``gfla_tf.evaluation.lpips``);
        "random" gives random weights (smoke tests only; the numbers mean nothing).
      inception_weights: the FID network's weights: for ``fid_protocol="gfla"``
        "default" (``gfla_tf.pretrained.inception_v3.default_weights_path``) or the path
        of torchvision's ``inception_v3`` state dict (.pth/.npz); for "keras" "imagenet"
        (also what "default" means there) or a Keras weights file; "random" for tests.
      fid_protocol: "gfla" (torchvision Inception-v3 and the authors' input mapping and
        batching: the paper's FID) or "keras" (``keras.applications.InceptionV3``).
      fid_reference: ``.npz`` statistics or an image folder; default ``<data>/train``.
      fid_input_size: Inception input side (299 as published).
      ssim_range: "fixed" (data range 255) or "dynamic" (per generated image, as the
        PG2/PATN/GFLA scripts do).
      strategy: "default" or "mirrored".
      rank_by: per-pair metric used to pick the best/worst pairs ("lpips" or "ssim";
        None = lpips when computed, else ssim).
      num_examples: number of best and of worst pairs shown in the report.
    """

    model: str
    data: str
    out: str
    metrics: tuple = ("ssim", "psnr", "lpips", "fid")
    batch_size: int = 8
    limit: int = None
    dataset: str = "auto"
    split: str = "test"
    lpips_weights: str = "default"
    inception_weights: str = "default"
    fid_protocol: str = "gfla"
    fid_reference: str = None
    fid_input_size: int = 299
    ssim_range: str = "fixed"
    strategy: str = "default"
    rank_by: str = None
    num_examples: int = 4


def parse_metrics(text):
    """Parses "ssim,lpips,..." into a tuple; raises ValueError naming unknown metrics."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(
            f"--metrics: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(METRICS)}"
        )
    return names


def detect_dataset_kind(root):
    """Guesses the dataset kind from the files under ``root``.

    Returns:
      "synthetic" (a ``synthetic.json`` manifest), "market" (``market-*`` CSVs) or
      "deepfashion".
    """
    if os.path.exists(os.path.join(root, "synthetic.json")):
        return "synthetic"
    if glob.glob(os.path.join(root, "market-*.csv")):
        return "market"
    return "deepfashion"


def data_config_for(kind, root):
    """The ``config.data`` of the dataset's configuration, pointed at ``root``."""
    from gfla_tf.configs import deepfashion, market, synthetic

    module = {"deepfashion": deepfashion, "market": market, "synthetic": synthetic}[kind]
    config = module.get_config().data
    config.root = root
    # Pairs in file order (per_pair.csv and the report index them).
    config.deterministic = True
    if kind == "synthetic":
        from gfla_tf.data.synthetic import read_manifest

        manifest = read_manifest(root) or {}
        if "size" in manifest:
            config.annotation_height = config.annotation_width = int(manifest["size"])
            config.synthetic_size = int(manifest["size"])
    return config


def list_pairs(kind, root, split):
    """The (source, target) names of the usable pairs, in the order the dataset yields."""
    from gfla_tf.data.dataset import load_split

    return [tuple(pair) for pair in load_split(data_config_for(kind, root), split).pairs]


def make_strategy(name):
    """Returns the ``tf.distribute`` strategy "default" or "mirrored" (``build_strategy``)."""
    from gfla_tf.training.strategy import build_strategy

    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return build_strategy(name)


def _local_concat(strategy, structure):
    """Concatenates the per-replica parts of a (nested) step result, in replica order."""

    def gather(value):
        parts = strategy.experimental_local_results(value)
        return np.concatenate([np.asarray(p) for p in parts], axis=0)

    return tf.nest.map_structure(gather, structure)


class Evaluator:
    """Computes the metrics of ``EvaluationOptions`` and writes the report.

    Args:
      options: an ``EvaluationOptions``.

    Raises:
      WeightsUnavailableError: a requested metric's network weights are missing.
      ValueError: bad options (unknown metric, dataset kind, strategy).
    """

    def __init__(self, options):
        self.options = options
        self.metrics = tuple(options.metrics)
        parse_metrics(",".join(self.metrics))
        if options.ssim_range not in ("fixed", "dynamic"):
            raise ValueError(
                f"--ssim-data-range must be fixed or dynamic, got {options.ssim_range!r}"
            )
        if options.fid_protocol not in FID_PROTOCOLS:
            raise ValueError(
                f"--fid-protocol must be one of {', '.join(FID_PROTOCOLS)}, "
                f"got {options.fid_protocol!r}"
            )
        if options.dataset not in DATASET_KINDS:
            raise ValueError(
                f"--dataset must be one of {', '.join(DATASET_KINDS)}, got {options.dataset!r}"
            )
        if int(options.batch_size) < 1:
            raise ValueError(f"--batch-size must be >= 1, got {options.batch_size}")
        if options.limit is not None and int(options.limit) < 1:
            raise ValueError(f"--limit must be >= 1, got {options.limit}")
        if not os.path.exists(options.model):
            raise FileNotFoundError(f"--model: {options.model} does not exist")
        if not os.path.isdir(options.data):
            raise FileNotFoundError(f"--data: {options.data} is not a directory")
        self.kind = (
            detect_dataset_kind(options.data) if options.dataset == "auto" else options.dataset
        )
        if "epe" in self.metrics and self.kind != "synthetic":
            raise ValueError(
                "--metrics epe needs ground-truth flow, which only the synthetic dataset has "
                f"({options.data} looks like {self.kind})"
            )
        self.strategy = make_strategy(options.strategy)
        self.max_val = 2.0 if options.ssim_range == "fixed" else "dynamic"
        self.protocol = Protocol(dataset=f"{self.kind} at {options.data}", split=options.split)
        if options.ssim_range == "dynamic":
            self.protocol.ssim = self.protocol.ssim.replace(
                "data range = full range (255 on uint8)",
                "data range = max - min of each generated image (PG2/PATN/GFLA scripts)",
            )
        self.lpips = None
        self.fid = None
        self.reference_stats = None

    # -- set-up, in fail-fast order ------------------------------------------------------

    def load_metric_networks(self):
        """Loads LPIPS / Inception (fails before generation when weights are missing)."""
        options = self.options
        with self.strategy.scope():
            if "lpips" in self.metrics or "lpips_masked" in self.metrics:
                weights = None if options.lpips_weights == "random" else options.lpips_weights
                self.lpips = LPIPS(weights=weights)
                self.protocol.lpips = (
                    "AlexNet v0.1 with linear calibration (lpips package), "
                    f"weights: {options.lpips_weights}; images compared at the evaluation "
                    "resolution"
                )
            if "fid" in self.metrics:
                weights = (
                    None if options.inception_weights == "random" else options.inception_weights
                )
                self.fid = FID(
                    weights=weights,
                    input_size=options.fid_input_size,
                    protocol=options.fid_protocol,
                )
                self.protocol.fid_features = fid_lib.describe(
                    options.fid_protocol, options.inception_weights, options.fid_input_size
                )
        if "random" in (options.lpips_weights, options.inception_weights):
            self.protocol.notes.append("random metric-network weights: for testing only")

    def load_model(self):
        """Loads ``options.model`` as a ``gfla_tf.export.Predictor``."""
        options = self.options
        from gfla_tf.export import load_predictor

        self.predictor = load_predictor(options.model)
        self.num_flows = None
        self.image_size = tuple(int(v) for v in self.predictor.image_size)
        self.protocol.resolution = tuple(self.image_size)
        self.protocol.model = f"{options.model} ({self.predictor.format})"
        return self.predictor

    def _dataset(self, split, shuffle=False):
        from gfla_tf.data import build_dataset

        config = data_config_for(self.kind, self.options.data)
        dataset = build_dataset(
            config,
            split,
            self.options.batch_size,
            self.image_size,
            shuffle=shuffle,
            repeat=False,
            drop_remainder=False,
        )
        # Pad the last batch with "valid": False filler so every batch has the same shape:
        # one trace of the step (and of a host predictor) instead of two, and equal
        # per-replica batches under a MirroredStrategy.
        batch_size = int(self.options.batch_size)
        dataset = dataset.unbatch().take(len(self.pairs))
        dataset = dataset.map(lambda e: dict(e, valid=tf.constant(True)))
        padding = -len(self.pairs) % batch_size
        if padding:
            filler = dataset.take(1).map(lambda e: {k: tf.zeros_like(v) for k, v in e.items()})
            dataset = dataset.concatenate(filler.repeat(padding))
        return dataset.batch(batch_size, drop_remainder=True)

    def load_reference_statistics(self):
        """FID statistics of the real images: an .npz, an image folder, or ``<data>/train``."""
        if self.fid is None:
            return None
        source = self.options.fid_reference or os.path.join(self.options.data, "train")
        if os.path.isfile(source):
            self.reference_stats = FeatureStatistics.load(source)
            self.protocol.fid_reference = (
                f"statistics file {source} ({self.reference_stats.count} images)"
            )
            return self.reference_stats
        files = sorted(
            f
            for f in glob.glob(os.path.join(source, "**", "*"), recursive=True)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise FileNotFoundError(
                f"--fid-reference: no images under {source}; pass an image folder or an .npz "
                "with 'mu' and 'sigma'"
            )
        if self.fid.protocol == "gfla":
            # The authors' script reads the real images as they are and resizes them
            # straight to the Inception input (bilinear, no antialias) like the fakes.
            height = width = self.fid.input_size
            antialias = False
            how = "read at their own size, resized only by the FID protocol"
        else:
            height, width = self.image_size
            antialias = True
            how = f"resized to {height}x{width} (bilinear, antialiased) like the test images"
        used = self.fid.usable_count(len(files))
        self.protocol.fid_reference = f"{used} of {len(files)} real images under {source}, {how}"

        def load(path):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image = tf.image.resize(
                tf.cast(image, tf.float32), [height, width], antialias=antialias
            )
            return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)

        dataset = tf.data.Dataset.from_tensor_slices(files).map(load).batch(self.options.batch_size)
        extract = tf.function(self.fid.extract_tensor, reduce_retracing=True, autograph=False)
        accumulator = self.fid.accumulator()
        logger.info("computing FID reference statistics of %d images", len(files))
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            features = self.strategy.run(extract, args=(batch,))
            accumulator.update(_local_concat(self.strategy, features))
        stats = accumulator.statistics
        self.reference_stats = stats
        cache = os.path.join(self.options.out, "fid_reference_stats.npz")
        stats.save(cache)
        self.protocol.notes.append(
            f"FID reference statistics saved to {cache} (reuse with --fid-reference)"
        )
        return stats

    # -- the replicated step -----------------------------------------------------------

    def _step(self, batch):
        generated = batch["generated"]
        flows = [batch[f"flow_{i}"] for i in range(self.num_flows)]
        masks = [batch[f"mask_{i}"] for i in range(self.num_flows)]
        # Metrics see the uint8 images, as they would be read back from lossless files.
        fake = image_metrics.to_signed_unit(generated)
        real = tf.cast(batch["target_image"], tf.float32)
        results = {
            "generated": generated,
            "ssim": image_metrics.ssim(fake, real, max_val=self.max_val),
            "psnr": image_metrics.psnr(fake, real),
        }
        if flows:
            results["flow_last"] = flows[-1]
            results["mask_last"] = masks[-1]
        if self.lpips is not None:
            results["lpips"] = self.lpips((fake, real))
        if self.fid is not None:
            results["features"] = self.fid.extract_tensor(fake)
        if "epe" in self.metrics:
            source = tf.cast(batch["source_image"], tf.float32)
            gt_flow, visibility = batch["flow"], batch["visibility"]
            height = self.image_size[0]
            # Static shapes: recorded while tracing, read when summarising.
            self._factors = [height // int(flow.shape[1]) for flow in flows]
            # Like the quickstart: each scale's flow upsampled to full resolution, in
            # full-resolution pixels, against the full-resolution ground truth; beside it
            # the zero flow (the copy-the-source warp) as the baseline.
            moving = tf.cast(tf.norm(gt_flow, axis=-1, keepdims=True) > 0.5, tf.float32)
            masks = {"all": None, "visible": visibility, "moving": visibility * moving}
            zero = tf.zeros_like(gt_flow)
            for which, mask in masks.items():
                results[f"epe_{which}_zero"] = flow_metrics.endpoint_error_sums(zero, gt_flow, mask)
            for i, flow in enumerate(flows):
                full = flow_metrics.upsample_flow(flow, self.image_size)
                for which, mask in masks.items():
                    results[f"epe_{which}_{i}"] = flow_metrics.endpoint_error_sums(
                        full, gt_flow, mask
                    )
                results[f"warp_ssim_{i}"] = flow_metrics.warped_ssim(
                    source, real, flow, visibility, max_val=self.max_val
                )
            results["warp_ssim_gt"] = flow_metrics.warped_ssim(
                source, real, gt_flow, visibility, max_val=self.max_val
            )
        return results

    def _host_batch(self, batch):
        """Runs the predictor and adds its outputs to the batch."""
        source = np.asarray(batch["source_image"])
        source_u8 = np.clip(np.round((source + 1.0) * 127.5), 0, 255).astype(np.uint8)
        out = self.predictor.predict(
            source_u8, np.asarray(batch["source_keypoints"]), np.asarray(batch["target_keypoints"])
        )
        generated = np.asarray(out["image"], np.uint8)
        flows = [np.asarray(f, np.float32) for f in out["flows"]]
        masks = [np.asarray(m, np.float32) for m in out["masks"]]
        if self.num_flows is None:
            self.num_flows = len(flows)
        batch = dict(batch)
        batch["generated"] = generated
        for i, (flow, mask) in enumerate(zip(flows, masks)):
            batch[f"flow_{i}"] = flow
            batch[f"mask_{i}"] = mask
        return batch

    def _distribute_host_batch(self, batch):
        replicas = self.strategy.num_replicas_in_sync
        arrays = {k: np.asarray(v) for k, v in batch.items()}
        if replicas == 1:
            return arrays

        def part(context):
            index = context.replica_id_in_sync_group
            return {k: np.array_split(v, replicas)[index] for k, v in arrays.items()}

        return self.strategy.experimental_distribute_values_from_function(part)

    # -- the run -----------------------------------------------------------------------

    def run(self):
        """Evaluates and writes the outputs; returns the ``metrics.json`` content."""
        options = self.options
        started = time.perf_counter()
        self.load_metric_networks()
        os.makedirs(options.out, exist_ok=True)
        self.pairs = list_pairs(self.kind, options.data, options.split)
        if options.limit:
            self.pairs = self.pairs[: int(options.limit)]
        total = len(self.pairs)
        if self.fid is not None and self.fid.usable_count(total) < 2:
            raise ValueError(
                f"FID needs at least 2 images; the {options.fid_protocol} protocol uses "
                f"{self.fid.usable_count(total)} of these {total} pairs (whole batches of "
                f"{fid_lib.GFLA_BATCH}); evaluate more pairs or use --fid-protocol keras"
            )
        self.load_model()
        self.load_reference_statistics()
        self.protocol.resize_filter = (
            f"dataset images resized to {self.image_size[0]}x{self.image_size[1]} by "
            "gfla_tf.data.build_dataset (see its docs)"
        )
        if self.kind == "synthetic" and "epe" in self.metrics:
            self.protocol.flow_ground_truth = (
                "full-resolution backward flow and visibility of the synthetic renderer; "
                "each predicted flow scale is upsampled bilinearly to full resolution and "
                "rescaled to full-resolution px (as the quickstart does); EPE = mean |flow - "
                "truth| in px over all / visible / moving (visible, |truth| > 0.5 px) pixels, "
                "with the zero flow as baseline; warp SSIM warps the source with the "
                "upsampled flow"
            )
        rank_by = options.rank_by or ("lpips" if self.lpips is not None else "ssim")
        if rank_by not in ("lpips", "ssim", "psnr") or (rank_by == "lpips" and self.lpips is None):
            raise ValueError(f"--rank-by {rank_by} is not a computed per-pair metric")

        dataset = self._dataset(options.split)
        # No Python control flow depends on tensors here; skipping autograph's source
        # conversion of the generator and metric networks saves most of the trace time.
        step = tf.function(
            lambda b: self.strategy.run(self._step, args=(b,)),
            reduce_retracing=True,
            autograph=False,
        )
        batches = ((self._distribute_host_batch(self._host_batch(b)), b) for b in dataset)
        progress = keras.utils.Progbar(total, unit_name="pair")
        per_pair = {"ssim": [], "psnr": []}
        if "lpips" in self.metrics:
            per_pair["lpips"] = []
        masked_lpips = None
        if "lpips_masked" in self.metrics:
            per_pair["lpips_masked"] = []
            # Host side, on the uint8 fakes: the mask is drawn with scikit-image.
            masked_lpips = tf.function(
                lambda a, b: self.lpips((a, b)), reduce_retracing=True, autograph=False
            )
            self.protocol.lpips += (
                "; lpips_masked: both images (in [-1, 1]) multiplied by the target pose's "
                "person mask (gfla_tf.evaluation.person_mask: 23 limb quadrilaterals and "
                "joint discs of radius 4, 5x5 closing; Market-1501's mask-LPIPS)"
            )
        generated_stats = self.fid.accumulator() if self.fid is not None else None
        paper_ssim = [
            name
            for name in image_metrics.PAPER_SSIM_VARIANTS
            if name != "ssim_uniform51" or min(self.image_size) >= 51
        ]
        if paper_ssim and importlib.util.find_spec("skimage") is None:
            paper_ssim = []
            self.protocol.notes.append(
                "the paper's SSIM variants were not computed: pip install scikit-image"
            )
        for name in paper_ssim:
            per_pair[name] = []
            self.protocol.paper_ssim[name] = image_metrics.PAPER_SSIM_VARIANTS[name]
        if min(self.image_size) < 51:
            self.protocol.notes.append("ssim_uniform51 not computed: images under 51 px")
        epe_sums = {}
        warp_values = {}
        best, worst = [], []
        seen = 0
        for step_input, raw in batches:
            results = _local_concat(self.strategy, step(step_input))
            host = {k: np.asarray(v) for k, v in raw.items()}
            valid = host["valid"].astype(bool)
            results = tf.nest.map_structure(lambda v, m=valid: v[m], results)
            count = int(valid.sum())
            if paper_ssim:
                target_u8 = _to_uint8(host["target_image"][valid])
                for name in paper_ssim:
                    results[name] = image_metrics.paper_ssim(results["generated"], target_u8, name)
            if masked_lpips is not None:
                masks = np.stack(
                    [
                        person_mask.keypoint_mask(points, self.image_size)
                        for points in host["target_keypoints"][valid]
                    ]
                )[..., None].astype(np.float32)
                fake = results["generated"].astype(np.float32) / 127.5 - 1.0
                real = host["target_image"][valid].astype(np.float32)
                results["lpips_masked"] = np.asarray(masked_lpips(fake * masks, real * masks))
            for name in per_pair:
                per_pair[name].extend(float(v) for v in results[name])
            if generated_stats is not None:
                generated_stats.update(results["features"])
            for key, value in results.items():
                if key.startswith("epe_"):
                    sums, counts = value
                    acc = epe_sums.setdefault(key, [0.0, 0.0])
                    acc[0] += float(np.sum(sums))
                    acc[1] += float(np.sum(counts))
                elif key.startswith("warp_ssim"):
                    warp_values.setdefault(key, []).extend(float(v) for v in value)
            self._keep_examples(best, worst, results, host, rank_by, seen, count)
            seen += count
            progress.add(count)
        if not seen:
            raise ValueError(f"no {options.split} pairs found under {options.data}")
        self.protocol.num_pairs = seen
        metrics = {name: float(np.nanmean(values)) for name, values in per_pair.items()}
        if generated_stats is not None:
            if generated_stats.dropped:
                self.protocol.notes.append(
                    f"FID: the last {generated_stats.dropped} generated images (a partial "
                    f"batch of {fid_lib.GFLA_BATCH}) were dropped, as the authors' script does"
                )
            metrics["fid"] = FID.distance(generated_stats.statistics, self.reference_stats)
        if epe_sums:
            metrics["epe"] = self._epe_summary(epe_sums)
            metrics["warp_ssim"] = {
                (
                    "ground_truth"
                    if key == "warp_ssim_gt"
                    else self._scale_name(int(key.rsplit("_", 1)[1]))
                ): float(np.nanmean(values))
                for key, values in warp_values.items()
            }
        output = {
            "metrics": metrics,
            "protocol": self.protocol.to_dict(),
            "num_pairs": seen,
            "rank_by": rank_by,
            "seconds": round(time.perf_counter() - started, 2),
        }
        report.write_json(os.path.join(options.out, "metrics.json"), output)
        self._write_per_pair(per_pair)
        self._write_report(output, best, worst, rank_by)
        return output

    def _scale_name(self, index):
        factors = getattr(self, "_factors", [])
        return f"1/{factors[index]}" if index < len(factors) else f"scale_{index}"

    def _epe_summary(self, sums):
        """Pixel-weighted mean EPE in full-resolution px per flow scale, and the zero flow.

        Returns:
          {"unit": "px", "resolution": "HxW (full)", "1/8": {"all", "visible", "moving"},
          ..., "zero_flow": {...}}: "visible" counts the target pixels visible in the
          source, "moving" the visible ones whose true motion exceeds 0.5 px.
        """
        height, width = self.image_size
        summary = {"unit": "px", "resolution": f"{height}x{width} (full)"}
        for key, (total, count) in sorted(sums.items()):
            _, which, index = key.split("_")
            scale = "zero_flow" if index == "zero" else self._scale_name(int(index))
            summary.setdefault(scale, {})[which] = total / count if count else float("nan")
        summary["zero_flow"] = summary.pop("zero_flow")
        return summary

    def _keep_examples(self, best, worst, results, host, rank_by, offset, count):
        """Keeps the ``num_examples`` best and worst pairs with what the report shows."""
        keep = int(self.options.num_examples)
        if keep <= 0:
            return
        sign = -1.0 if rank_by == "lpips" else 1.0  # higher "goodness" is better
        for i in range(count):
            goodness = sign * float(results[rank_by][i])
            if not np.isfinite(goodness):
                continue
            for heap, key in ((best, goodness), (worst, -goodness)):
                item = (key, offset + i)
                if len(heap) < keep:
                    heapq.heappush(heap, (item, _example(results, host, i, offset)))
                elif item > heap[0][0]:
                    heapq.heapreplace(heap, (item, _example(results, host, i, offset)))

    def _write_per_pair(self, per_pair):
        names = list(per_pair)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["index", "source", "target"] + names)
        for i in range(len(per_pair[names[0]])):
            source, target = self.pairs[i] if i < len(self.pairs) else ("", "")
            writer.writerow([i, source, target] + [f"{per_pair[n][i]:.6f}" for n in names])
        gfla_io.atomic_write_text(os.path.join(self.options.out, "per_pair.csv"), buffer.getvalue())

    def _pair_label(self, index):
        if index < len(self.pairs):
            return f"pair {index}: {self.pairs[index][0]} -> {self.pairs[index][1]}"
        return f"pair {index}"

    def _write_report(self, output, best, worst, rank_by):
        out = self.options.out
        sections = []
        for title, heap, reverse in (("Best pairs", best, True), ("Worst pairs", worst, True)):
            entries = []
            for rank, (_, entry) in enumerate(sorted(heap, key=lambda e: e[0], reverse=reverse)):
                name = f"{title.split()[0].lower()}_{rank:02d}.png"
                strip = report.pair_strip(
                    entry["source"],
                    entry["target_keypoints"],
                    entry["generated"],
                    entry["target"],
                    entry["flow"],
                    entry["mask"],
                )
                report.write_png(os.path.join(out, "report", name), strip)
                entries.append(
                    {
                        "image": f"report/{name}",
                        "label": self._pair_label(entry["index"]),
                        "values": entry["values"],
                    }
                )
            sections.append((f"{title} by {rank_by}", entries))
        legend = None
        if any(entry.get("flow") is not None for _, entry in best + worst):
            legend = f"report/{report.LEGEND_FILE}"
            report.write_flow_legend(os.path.join(out, legend))
        report.write_html(
            os.path.join(out, "report.html"),
            output["metrics"],
            output["protocol"],
            sections,
            legend=legend,
        )


def _to_uint8(image):
    return np.clip(np.round((np.asarray(image) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _example(results, host, i, offset):
    """What the report shows of pair ``i`` of a batch."""
    return {
        "index": offset + i,
        "values": {n: float(results[n][i]) for n in ("ssim", "psnr", "lpips") if n in results},
        "source": _to_uint8(host["source_image"][i]),
        "target": _to_uint8(host["target_image"][i]),
        "target_keypoints": host["target_keypoints"][i],
        "generated": results["generated"][i],
        "flow": results["flow_last"][i] if "flow_last" in results else None,
        "mask": results["mask_last"][i] if "mask_last" in results else None,
    }


def evaluate(options):
    """Runs an evaluation; returns the ``metrics.json`` content.

    Args:
      options: an ``EvaluationOptions``.

    Returns:
      dict with "metrics", "protocol", "num_pairs", "rank_by" and "seconds".

    Raises:
      WeightsUnavailableError: LPIPS/Inception weights are missing (before generating).
      FileNotFoundError: the model, data or FID reference is missing.
      ValueError: bad options.
    """
    return Evaluator(options).run()


__all__ = ["EvaluationOptions", "Evaluator", "WeightsUnavailableError", "evaluate", "parse_metrics"]
