"""Data: keypoints and pose heatmaps, dataset pipelines, the synthetic person dataset.

Public API:

* ``KEYPOINT_NAMES``, ``keypoints_to_heatmaps``, ``scale_keypoints``, ``read_keypoints``
  and the format readers (OpenPose, COCO-17, annotation CSV).
* ``build_dataset`` (DeepFashion, Market-1501 and synthetic layouts), ``scan_dataset``
  and ``DataError`` for the pre-flight check.
* ``resize_flow``, ``read_flow``, ``warp_numpy`` for ground-truth flow.
* ``flow_to_color``, ``draw_skeleton``, ``contact_sheet`` for pictures.
* ``gfla_tf.data.synthetic.generate_dataset`` writes the synthetic dataset.
"""

from gfla_tf.data import synthetic
from gfla_tf.data.dataset import (
    DataError,
    ScanReport,
    build_dataset,
    find_split_files,
    load_split,
    resolve_root,
    scan_dataset,
)
from gfla_tf.data.flow import read_flow, resize_flow, warp_numpy, write_flow_png
from gfla_tf.data.keypoints import (
    KEYPOINT_NAMES,
    LIMBS,
    NUM_KEYPOINTS,
    KeypointFormatError,
    coco17_to_18,
    heatmaps_to_keypoints,
    keypoints_to_heatmaps,
    openpose_to_18,
    read_annotation_csv,
    read_coco_json,
    read_keypoints,
    read_openpose_json,
    scale_keypoints,
    write_annotation_csv,
)
from gfla_tf.data.synthetic import generate_dataset
from gfla_tf.data.visualize import contact_sheet, draw_skeleton, flow_to_color

__all__ = [
    "KEYPOINT_NAMES",
    "LIMBS",
    "NUM_KEYPOINTS",
    "DataError",
    "KeypointFormatError",
    "ScanReport",
    "build_dataset",
    "coco17_to_18",
    "contact_sheet",
    "draw_skeleton",
    "find_split_files",
    "flow_to_color",
    "generate_dataset",
    "heatmaps_to_keypoints",
    "keypoints_to_heatmaps",
    "load_split",
    "openpose_to_18",
    "read_annotation_csv",
    "read_coco_json",
    "read_flow",
    "read_keypoints",
    "read_openpose_json",
    "resize_flow",
    "resolve_root",
    "scale_keypoints",
    "scan_dataset",
    "synthetic",
    "warp_numpy",
    "write_annotation_csv",
    "write_flow_png",
]
