"""A backward flow implied by two skeletons: the pose prior of the flow estimator."""

import keras
import tensorflow as tf

from gfla_tf.data import keypoints as kp

# The skeleton's limbs plus the torso's sides and hip line, so that the torso, not only
# its centre line, follows the shoulders and hips.
PRIOR_BONES = kp.LIMBS + ((2, 8), (5, 11), (8, 11))


def _perpendicular(d):
    return tf.stack([-d[..., 1], d[..., 0]], axis=-1)


@keras.saving.register_keras_serializable(package="gfla")
class PosePriorFlow(keras.layers.Layer):
    """The backward flow that moves each bone of the source skeleton onto the target's.

    Keypoints are read back from the two pose heatmaps (``heatmaps_to_keypoints``). Each
    bone present in both poses maps a target point at (along, across) coordinates
    ``(u, v)`` (u in bone lengths from its first joint, v in pixels from its axis) to the
    source point with the same ``(u, v)``: the bone turns, moves and stretches along its
    length and keeps its width. A target pixel blends the bones by a softmax of
    ``-d**2 / (2 w**2)``, ``d`` its distance to the bone segment, ``w =
    blend_width * image height``, against a zero-flow background at ``reach * w``; so
    pixels on a limb follow it and pixels far from the skeleton stay put. No weights.

    On the synthetic people this prior alone is 1.1 px off on the moving pixels at 64x64
    (zero flow: 6.5 px); the flow estimator learns a correction to it (benchmarks/
    RESULTS.md, quickstart quality).

    Args:
      blend_width: the blending distance ``w`` as a fraction of the image height (1/64).
      reach: distance from the skeleton, in units of ``w``, at which the background
        weighs as much as a bone (3).
      threshold: heatmap peak below which a keypoint counts as missing (0.1).
      **kwargs: base layer arguments; the layer computes in float32 whatever the policy.

    Call:
      ``layer(source_pose, target_pose)`` with [B, H, W, K] heatmaps (K = 18, COCO-18
      order) -> [B, H, W, 2] float32 flow in pixels: target (x, y) reads the source at
      (x + flow_x, y + flow_y). Constant for gradients.

    Example:
      >>> prior = PosePriorFlow()
      >>> flow = prior(source_heatmaps, target_heatmaps)  # (B, H, W, 2)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020 (the flow it refines); the bone-wise warp is gfla-tf's own.
    """

    def __init__(self, blend_width=1.0 / 64, reach=3.0, threshold=0.1, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if not float(blend_width) > 0:
            raise ValueError(f"blend_width must be positive, got {blend_width!r}")
        if not float(reach) > 0:
            raise ValueError(f"reach must be positive, got {reach!r}")
        self.blend_width = float(blend_width)
        self.reach = float(reach)
        self.threshold = float(threshold)

    def call(self, source_pose, target_pose):
        if source_pose.shape[-1] != kp.NUM_KEYPOINTS:
            raise ValueError(
                f"PosePriorFlow needs {kp.NUM_KEYPOINTS} COCO-18 heatmaps, got "
                f"{source_pose.shape[-1]} channels"
            )
        source = kp.heatmaps_to_keypoints(source_pose, self.threshold)
        target = kp.heatmaps_to_keypoints(target_pose, self.threshold)
        first = [a for a, _ in PRIOR_BONES]
        second = [b for _, b in PRIOR_BONES]
        # Bone ends [B, bones, 2]; a bone counts when all four ends are present.
        ends = [tf.gather(p, i, axis=1) for p in (target, source) for i in (first, second)]
        present = tf.reduce_all(tf.stack([e[..., 0] >= 0 for e in ends]), axis=0)
        # As [B, bones, 1, 1, 2] against the pixel grid [H, W, 2].
        t0, t1, s0, s1 = (e[:, :, None, None, :] for e in ends)
        height, width = tf.shape(target_pose)[1], tf.shape(target_pose)[2]
        yy, xx = tf.meshgrid(
            tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
        )
        grid = tf.stack([xx, yy], axis=-1)
        t_axis, s_axis = t1 - t0, s1 - s0
        t_len = tf.maximum(tf.norm(t_axis, axis=-1, keepdims=True), 1e-6)
        s_len = tf.maximum(tf.norm(s_axis, axis=-1, keepdims=True), 1e-6)
        offset = grid - t0  # [B, bones, H, W, 2]
        along = tf.reduce_sum(offset * t_axis, axis=-1, keepdims=True) / tf.square(t_len)
        across = tf.reduce_sum(offset * _perpendicular(t_axis), axis=-1, keepdims=True) / t_len
        moved = s0 + along * s_axis + across * _perpendicular(s_axis) / s_len - grid
        nearest = t0 + tf.clip_by_value(along, 0.0, 1.0) * t_axis
        distance2 = tf.reduce_sum(tf.square(grid - nearest), axis=-1)  # [B, bones, H, W]
        spread = 2.0 * tf.square(self.blend_width * tf.cast(height, tf.float32))
        logits = tf.where(present[:, :, None, None], -distance2 / spread, -1e9)
        background = tf.fill(tf.shape(logits[:, :1]), -0.5 * self.reach**2)
        weights = tf.nn.softmax(tf.concat([logits, background], axis=1), axis=1)[:, :-1]
        flow = tf.reduce_sum(weights[..., None] * moved, axis=1)
        return tf.stop_gradient(flow)

    def compute_output_shape(self, source_pose_shape, target_pose_shape):
        return tuple(target_pose_shape[:3]) + (2,)

    def get_config(self):
        config = super().get_config()
        config.update(blend_width=self.blend_width, reach=self.reach, threshold=self.threshold)
        return config
