"""The evaluation protocol that goes with every reported number.

Published pose-transfer numbers differ in resolution (256x256 vs 256x176), resize filter,
whether generated images went through JPEG, and which real set FID compares against;
a number without those facts cannot be compared. ``Protocol`` records them and is written
into ``metrics.json`` next to the metrics.
"""

import dataclasses

from gfla_tf.evaluation import image_metrics


@dataclasses.dataclass
class Protocol:
    """How a set of metrics was computed.

    Args:
      resolution: (height, width) of the generated and target images compared.
      resize_filter: how dataset images were brought to ``resolution``.
      generated_format: what the generated images were when measured (e.g. "uint8 in
        memory, not re-encoded" vs "JPEG q=95 files").
      dataset: dataset kind and root (as given).
      split: the split of the evaluated pairs.
      num_pairs: the number of pairs evaluated.
      model: the model path and its format.
      ssim: the SSIM definition.
      psnr: the PSNR definition.
      paper_ssim: the authors' two SSIM variants computed (name -> definition).
      lpips: the LPIPS network and weights used.
      fid_features: the FID feature extractor, its input size and resize.
      fid_reference: which real images FID compares against (and how many).
      flow_ground_truth: how ground-truth flow was brought to each flow scale.
      notes: anything else that affects comparability.
    """

    resolution: tuple = (256, 256)
    resize_filter: str = ""
    generated_format: str = "uint8 arrays from the model, not re-encoded (lossless, as PNG)"
    dataset: str = ""
    split: str = "test"
    num_pairs: int = 0
    model: str = ""
    ssim: str = (
        f"Gaussian window {image_metrics.SSIM_WINDOW}, sigma {image_metrics.SSIM_SIGMA}, "
        f"K1 {image_metrics.SSIM_K1}, K2 {image_metrics.SSIM_K2}, population covariance, "
        "valid window positions, mean over channels; data range = full range (255 on uint8)"
    )
    psnr: str = "10 log10(255^2 / MSE) per image on uint8-equivalent values, mean over pairs"
    paper_ssim: dict = dataclasses.field(default_factory=dict)
    lpips: str = "not computed"
    fid_features: str = "not computed"
    fid_reference: str = "not computed"
    flow_ground_truth: str = "not computed"
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        """A JSON-serialisable dict of the fields."""
        result = dataclasses.asdict(self)
        result["resolution"] = list(self.resolution)
        return result
