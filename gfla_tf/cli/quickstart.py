"""gfla quickstart: the whole GFLA pipeline on built-in synthetic data, on a CPU.

Generates the synthetic person dataset, trains stage 1 (the flow estimator) and stage 2
(the whole generator) of the small configuration in configs/synthetic.py, writes a sample
grid PNG, exports the generator (once: a rerun of a finished quickstart reuses its
export) and reports, on held-out synthetic pairs, whether the output carries the source
person's appearance (identity SSIM, person MAE, source dependence; see
gfla_tf.evaluation.appearance) next to the copy-the-source and ground-truth-warp
baselines, the SSIM next to copying the source and the flow end-point error next to
zero flow. --fast runs a tiny version in well under a minute (a smoke test, not expected
to beat the baselines).
"""

import hashlib
import json
import logging
import os
import sys
import time

from gfla_tf import io
from gfla_tf.cli.main import ArgumentParser

logger = logging.getLogger(__name__)


def _parse(argv):
    parser = ArgumentParser(
        prog=argv[0],
        description=__doc__.split("\n\n")[1],
        epilog="example: gfla quickstart --workdir runs/quickstart",
    )
    parser.add_argument("--workdir", default=os.path.join("runs", "quickstart"))
    parser.add_argument("--fast", action="store_true", help="tiny model and data (seconds)")
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (override)")
    parser.add_argument("--pairs", type=int, default=None, help="training pairs (override)")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--require-baselines",
        action="store_true",
        help="exit with status 1 unless the model beats the SSIM and flow baselines and "
        "reaches the three appearance targets",
    )
    return parser.parse_args(argv[1:])


def _stage_config(base, stage, steps, workdir):
    config = base.copy_and_resolve_references()
    with config.unlocked():
        config.train.stage = stage
        config.train.steps = steps
        config.train.steps_per_epoch = min(config.train.steps_per_epoch, steps)
        config.train.checkpoint_every = steps
        config.train.log_every = max(1, min(config.train.log_every, steps))
        config.train.image_every = steps
        if stage == 1 and config.train.quickstart_stage1_learning_rate:
            config.train.g_learning_rate = config.train.quickstart_stage1_learning_rate
        if stage == 2:
            config.train.stage1_checkpoint = os.path.join(workdir, "stage1")
    return config


def _banner(index, total, text):
    print(f"\n[{index}/{total}] {text}", flush=True)


def evaluate(generator, config, max_pairs=None):
    """Scores a generator on the synthetic test split against the trivial baselines.

    Args:
      generator: the trained generator.
      config: the quickstart configuration (``config.data.root`` set).
      max_pairs: limit on the number of test pairs.

    Returns:
      dict with ``ssim``, ``ssim_copy_source``, ``epe``, ``epe_zero_flow`` (px at full
      resolution, visible pixels), ``epe_moving``, ``epe_moving_zero_flow`` (visible
      pixels whose true motion exceeds half a pixel: the person), ``pairs`` and
      ``appearance`` (``gfla_tf.evaluation.appearance.appearance_scores``: rows
      ``model``, ``copy_source``, ``gt_warp``).
    """
    import numpy as np
    import tensorflow as tf

    from gfla_tf import data, evaluation
    from gfla_tf.evaluation import appearance

    size = (config.model.image_height, config.model.image_width)

    def test_batches():
        return data.build_dataset(
            config.data,
            "test",
            8,
            size,
            shuffle=False,
            repeat=False,
            drop_remainder=False,
            with_names=True,
        )

    scale = int(generator.attention_scales[-1])
    ssim_gen, ssim_copy, pairs = [], [], 0
    # [predicted, zero flow, pixel count] over all visible pixels and the moving ones.
    epe = {"all": [0.0, 0.0, 0.0], "moving": [0.0, 0.0, 0.0]}

    @tf.function
    def run(inputs):
        return generator(inputs, training=False)

    for batch in test_batches():
        inputs = {k: batch[k] for k in ("source_image", "source_pose", "target_pose")}
        outputs = run(inputs)
        ssim_gen.append(evaluation.ssim(outputs["image"], batch["target_image"]).numpy())
        ssim_copy.append(evaluation.ssim(batch["source_image"], batch["target_image"]).numpy())
        # The finest flow, in full-resolution pixels, against the ground truth.
        flow = tf.image.resize(outputs["flows"][-1], size, method="bilinear") * float(scale)
        moving = tf.cast(tf.norm(batch["flow"], axis=-1, keepdims=True) > 0.5, tf.float32)
        for name, mask in (("all", batch["visibility"]), ("moving", batch["visibility"] * moving)):
            sums, count = evaluation.endpoint_error_sums(flow, batch["flow"], mask)
            zero_sums, _ = evaluation.endpoint_error_sums(
                tf.zeros_like(batch["flow"]), batch["flow"], mask
            )
            epe[name][0] += float(tf.reduce_sum(sums))
            epe[name][1] += float(tf.reduce_sum(zero_sums))
            epe[name][2] += float(tf.reduce_sum(count))
        pairs += int(batch["source_image"].shape[0])
        if max_pairs and pairs >= max_pairs:
            break

    def generate(inputs):
        return run({k: tf.convert_to_tensor(v) for k, v in inputs.items()})["image"].numpy()

    scores = appearance.appearance_scores(
        generate,
        appearance.with_target_masks(test_batches(), config.data.root, "test"),
        max_pairs=max_pairs,
    )
    return {
        "pairs": pairs,
        "ssim": float(np.mean(np.concatenate(ssim_gen))),
        "ssim_copy_source": float(np.mean(np.concatenate(ssim_copy))),
        "epe": epe["all"][0] / max(epe["all"][2], 1.0),
        "epe_zero_flow": epe["all"][1] / max(epe["all"][2], 1.0),
        "epe_moving": epe["moving"][0] / max(epe["moving"][2], 1.0),
        "epe_moving_zero_flow": epe["moving"][1] / max(epe["moving"][2], 1.0),
        "appearance": scores,
    }


def _weights_digest(generator):
    digest = hashlib.sha256()
    for variable in generator.weights:
        digest.update(variable.path.encode())
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()


def _export(generator, workdir, sigma):
    """Exports the generator once; a rerun with the same weights reuses that export.

    ``sigma`` is the training data's heatmap sigma, which the export's pose encoding uses.
    """
    from gfla_tf.export import export_saved_model

    base = os.path.join(workdir, "export")
    record = os.path.join(workdir, "export.json")
    digest = _weights_digest(generator)
    try:
        with open(record) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {}
    if previous.get("weights_sha256") == digest and os.path.isdir(previous.get("path", "")):
        return previous["path"], True
    path = export_saved_model(generator, base, sigma=sigma)
    io.atomic_write_text(record, json.dumps({"path": path, "weights_sha256": digest}) + "\n")
    return path, False


def main(argv):
    """Runs the quickstart; returns 0 on success.

    With ``--require-baselines`` a model that misses a baseline or an appearance target
    returns 1 (the ``--fast`` smoke test is not expected to learn and never does).
    """
    args = _parse(argv)
    start = time.perf_counter()
    from gfla_tf import data, training
    from gfla_tf.configs import synthetic
    from gfla_tf.evaluation import appearance, report

    config = synthetic.get_config("test" if args.fast else None)
    workdir = os.path.abspath(args.workdir)
    steps1 = args.steps or config.train.quickstart_stage1_steps
    steps2 = args.steps or config.train.quickstart_stage2_steps
    with config.unlocked():
        config.seed = args.seed
        if args.pairs:
            config.data.synthetic_pairs = args.pairs
        config.data.root = os.path.join(workdir, "data")
    total = 5 if args.no_export else 6

    _banner(1, total, f"generating {config.data.synthetic_pairs} synthetic training pairs")
    data.synthetic.generate_from_config(
        config.data, config.data.root, config.seed, replace_synthetic=True
    )
    _banner(2, total, f"stage 1: training the flow estimator ({steps1} steps)")
    training.train(
        _stage_config(config, 1, steps1, workdir),
        os.path.join(workdir, "stage1"),
        strategy="default",
        verbose=1,
    )
    _banner(3, total, f"stage 2: training the whole generator ({steps2} steps)")
    result = training.train(
        _stage_config(config, 2, steps2, workdir),
        os.path.join(workdir, "stage2"),
        strategy="default",
        verbose=1,
    )
    generator = result.generator

    _banner(4, total, "writing samples.png")
    size = (config.model.image_height, config.model.image_width)
    test_batch = next(
        iter(
            data.build_dataset(
                config.data, "test", 4, size, shuffle=False, repeat=False, drop_remainder=False
            )
        )
    )
    samples = os.path.join(workdir, "samples.png")
    grid = training.sample_grid(
        generator, {k: v.numpy() for k, v in test_batch.items()}, identity=True
    )
    report.write_png(samples, grid)
    print(
        f"  {samples} (columns: source, target pose, generated, target, identity = the "
        "source in its own pose, flow, mask)"
    )

    index = 5
    if not args.no_export:
        _banner(index, total, "exporting the generator")
        path, reused = _export(generator, workdir, config.data.sigma)
        print(f"  {path}" + (" (reused: same weights as the previous run)" if reused else ""))
        index += 1
    _banner(index, total, "evaluating on held-out synthetic pairs")
    scores = evaluate(generator, config)
    looks = scores["appearance"]
    beats_ssim = scores["ssim"] > scores["ssim_copy_source"]
    beats_epe = scores["epe"] < scores["epe_zero_flow"]
    print(f"\n  held-out pairs: {scores['pairs']} ({size[0]}x{size[1]})")
    print(appearance.format_table(looks))
    print()
    print("  | metric | GFLA | baseline |")
    print("  |---|---|---|")
    print(
        f"  | SSIM, whole frame (higher is better) | {scores['ssim']:.4f} "
        f"| {scores['ssim_copy_source']:.4f} (copy the source) |"
    )
    print(
        f"  | flow EPE, px at full resolution, visible pixels (lower is better) "
        f"| {scores['epe']:.3f} | {scores['epe_zero_flow']:.3f} (zero flow) |"
    )
    print(
        f"  | flow EPE, px at full resolution, moving (person) pixels "
        f"| {scores['epe_moving']:.3f} | {scores['epe_moving_zero_flow']:.3f} (zero flow) |"
    )
    minutes = (time.perf_counter() - start) / 60.0
    checks = [
        ("SSIM vs copying the source", beats_ssim),
        ("flow EPE vs zero flow", beats_epe),
        *looks["model"].target_checks(),
    ]
    ok = all(passed for _, passed in checks)
    verdict = (
        "beats both baselines and reaches the three appearance targets"
        if ok
        else "does NOT pass every check"
    )
    print(f"\nquickstart finished in {minutes:.1f} min: the model {verdict}. Outputs in {workdir}")
    if not ok:
        missed = [name for name, passed in checks if not passed]
        print(f"  missed: {'; '.join(missed)} (train longer: --steps N)")
        if args.require_baselines and not args.fast:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(["gfla quickstart"] + sys.argv[1:]))
