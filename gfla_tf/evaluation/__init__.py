"""Evaluation: the paper's metrics (SSIM, PSNR, LPIPS, FID), flow accuracy and reports.

Metrics take images as [B, H, W, 3] uint8 or float in [-1, 1]; see
``gfla_tf.evaluation.image_metrics`` for the SSIM/PSNR convention and
``gfla_tf.evaluation.protocol.Protocol`` for what is recorded with every number.
``gfla evaluate`` (``gfla_tf.cli.evaluate``) runs them over a test set.
"""

from gfla_tf.evaluation.evaluator import EvaluationOptions, Evaluator, evaluate
from gfla_tf.evaluation.fid import (
    FID,
    FID_PROTOCOLS,
    FeatureAccumulator,
    FeatureStatistics,
    build_inception,
    frechet_distance,
)
from gfla_tf.evaluation.flow_metrics import (
    downsample_ground_truth,
    endpoint_error,
    endpoint_error_sums,
    upsample_flow,
    warp,
    warped_ssim,
)
from gfla_tf.evaluation.image_metrics import (
    PAPER_SSIM_VARIANTS,
    paper_ssim,
    psnr,
    ssim,
    ssim_map,
    to_signed_unit,
)
from gfla_tf.evaluation.lpips import LPIPS, build_alexnet_features
from gfla_tf.evaluation.protocol import Protocol
from gfla_tf.pretrained.errors import WeightsUnavailableError

__all__ = [
    "EvaluationOptions",
    "Evaluator",
    "evaluate",
    "FID",
    "FID_PROTOCOLS",
    "FeatureAccumulator",
    "PAPER_SSIM_VARIANTS",
    "paper_ssim",
    "LPIPS",
    "FeatureStatistics",
    "Protocol",
    "WeightsUnavailableError",
    "build_alexnet_features",
    "build_inception",
    "downsample_ground_truth",
    "endpoint_error",
    "endpoint_error_sums",
    "frechet_distance",
    "psnr",
    "ssim",
    "ssim_map",
    "to_signed_unit",
    "upsample_flow",
    "warp",
    "warped_ssim",
]
