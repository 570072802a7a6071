"""Serving functions of an exported GFLA generator: validation, pre- and post-processing.

Two entry points are built around a generator (see ``gfla_tf.models.build_generator``):

* ``serving_default`` (:func:`keypoint_fn`): ``source_image`` uint8 [B, H, W, 3],
  ``source_keypoints`` / ``target_keypoints`` float32 [B, 18, 2] as (x, y) pixels of the
  image (negative = missing) -> ``image`` uint8 [B, H, W, 3], ``flow_<i>`` float32
  [B, h_i, w_i, 2] and ``mask_<i>`` float32 [B, h_i, w_i, 1], i = 0 coarsest. Heatmaps
  are rendered inside the graph.
* ``heatmaps`` (:func:`heatmap_fn`): ``source_image`` float32 in [-1, 1], ``source_pose``
  and ``target_pose`` float32 [B, H, W, 18] heatmaps -> ``image`` float32 in [-1, 1] plus
  the same flows and masks. The TFLite export keeps both signatures; its error against
  the Keras model is measured on this one's float image.

Bad requests (wrong rank, an image size the model does not take, batch mismatch) fail
inside the graph with ``InvalidArgumentError`` and a message that names the input and
what was expected, which TF Serving returns as INVALID_ARGUMENT. Wrong dtypes are
rejected by TensorFlow itself before the graph runs (also INVALID_ARGUMENT).
"""

import tensorflow as tf

SERVING_DEFAULT = "serving_default"
HEATMAP_SIGNATURE = "heatmaps"
DEFAULT_SIGMA = 6.0


def keypoints_to_heatmaps(keypoints, height, width, sigma=DEFAULT_SIGMA):
    """Renders keypoints as Gaussian heatmaps with stock TensorFlow ops.

    Delegates to ``gfla_tf.data.keypoints_to_heatmaps`` (the training pipeline's
    definition) so that serving and training see the same poses.

    Args:
      keypoints: [..., K, 2] float tensor of (x, y) pixels; negative = missing.
      height: heatmap height in pixels.
      width: heatmap width in pixels.
      sigma: Gaussian standard deviation in pixels.

    Returns:
      [..., height, width, K] float32 tensor.
    """
    from gfla_tf import data

    return tf.cast(data.keypoints_to_heatmaps(keypoints, height, width, sigma=sigma), tf.float32)


def _non_empty(ops):
    return [op for op in ops if op is not None]


def check_shape(tensor, name, expected, description):
    """Asserts at run time that ``tensor`` has rank ``len(expected)`` and the given dims.

    One ``Assert`` per input evaluates the rank and every dimension together (on a shape
    padded to the expected rank), so a wrong rank can never index out of bounds first.

    Args:
      tensor: the input tensor (its static shape may be unknown).
      name: the input's name, used in the error message.
      expected: list of ints or None (any size) per axis.
      description: human-readable layout, e.g. "[batch, 256, 256, 3]".

    Returns:
      ``tensor`` with its static shape set to ``expected`` (at most one None), after the
      check ran.
    """
    rank = len(expected)
    shape = tf.shape(tensor, out_type=tf.int32)
    padded = tf.concat([shape, tf.fill([rank], -1)], axis=0)[:rank]
    ok = tf.equal(tf.size(shape), rank)
    for axis, size in enumerate(expected):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    check = tf.debugging.Assert(
        ok, [f"{name} must have shape {description}; got shape", shape], summarize=8
    )
    with tf.control_dependencies(_non_empty([check])):
        # A reshape (not EnsureShape, which TFLite lacks) gives the static shape; after
        # the check it never changes the data.
        return tf.reshape(tensor, [-1 if size is None else size for size in expected])


def check_same_batch(tensors, names):
    """Asserts that every tensor has the batch size of the first; returns control deps."""
    first = tf.shape(tensors[0])[0]
    checks = []
    for tensor, name in zip(tensors[1:], names[1:]):
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(tensor)[0],
                first,
                message=f"{name} must have the same batch size as {names[0]}",
            )
        )
    return _non_empty(checks)


def to_uint8(image):
    """Maps a float image in [-1, 1] to uint8 [0, 255] with rounding and clipping."""
    scaled = tf.round((tf.cast(image, tf.float32) + 1.0) * 127.5)
    return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)


def from_uint8(image):
    """Maps a uint8 image to float32 in [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def _named_outputs(outputs, image):
    result = {"image": image}
    for i, flow in enumerate(outputs["flows"]):
        result[f"flow_{i}"] = tf.cast(flow, tf.float32)
    for i, mask in enumerate(outputs["masks"]):
        result[f"mask_{i}"] = tf.cast(mask, tf.float32)
    return result


def heatmap_fn(generator, image_size, num_keypoints=18):
    """Returns ``(fn, input_signature)`` of the float ``heatmaps`` signature.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width) the generator takes.
      num_keypoints: number of pose channels.

    Returns:
      A function of (source_image, source_pose, target_pose) returning a dict of outputs,
      and the list of ``tf.TensorSpec`` it is traced with.
    """
    height, width = image_size
    k = num_keypoints
    spec = [
        tf.TensorSpec([None, height, width, 3], tf.float32, name="source_image"),
        tf.TensorSpec([None, height, width, k], tf.float32, name="source_pose"),
        tf.TensorSpec([None, height, width, k], tf.float32, name="target_pose"),
    ]

    def serve_heatmaps(source_image, source_pose, target_pose):
        names = ["source_image", "source_pose", "target_pose"]
        tensors = [source_image, source_pose, target_pose]
        checks = check_same_batch(tensors, names)
        with tf.control_dependencies(checks):
            source_image = tf.identity(source_image)
        outputs = generator(
            {"source_image": source_image, "source_pose": source_pose, "target_pose": target_pose},
            training=False,
        )
        return _named_outputs(outputs, tf.cast(outputs["image"], tf.float32))

    return serve_heatmaps, spec


def keypoint_fn(heatmaps, image_size, sigma=DEFAULT_SIGMA, num_keypoints=18):
    """Returns ``(fn, input_signature)`` of the uint8 keypoint ``serving_default`` signature.

    The input specs leave every dimension open so that a request of the wrong rank or
    size reaches the graph and is rejected there with a readable INVALID_ARGUMENT.

    Args:
      heatmaps: the (traced) ``heatmaps`` function of :func:`heatmap_fn`; calling it
        rather than the generator keeps one copy of the network in the SavedModel.
      image_size: (height, width) the generator takes.
      sigma: heatmap Gaussian standard deviation in pixels.
      num_keypoints: number of keypoints per pose.

    Returns:
      A function of (source_image, source_keypoints, target_keypoints) returning a dict of
      outputs, and the list of ``tf.TensorSpec`` it is traced with.
    """
    height, width = image_size
    k = num_keypoints
    spec = [
        tf.TensorSpec(None, tf.uint8, name="source_image"),
        tf.TensorSpec(None, tf.float32, name="source_keypoints"),
        tf.TensorSpec(None, tf.float32, name="target_keypoints"),
    ]
    image_desc = f"[batch, {height}, {width}, 3] (this model takes {height}x{width} images)"
    kp_desc = f"[batch, {k}, 2] as (x, y) pixels, negative = missing"

    def serve_keypoints(source_image, source_keypoints, target_keypoints):
        source_image = check_shape(
            source_image, "source_image", [None, height, width, 3], image_desc
        )
        source_keypoints = check_shape(source_keypoints, "source_keypoints", [None, k, 2], kp_desc)
        target_keypoints = check_shape(target_keypoints, "target_keypoints", [None, k, 2], kp_desc)
        checks = check_same_batch(
            [source_image, source_keypoints, target_keypoints],
            ["source_image", "source_keypoints", "target_keypoints"],
        )
        with tf.control_dependencies(checks):
            image = from_uint8(source_image)
        outputs = dict(
            heatmaps(
                image,
                keypoints_to_heatmaps(source_keypoints, height, width, sigma),
                keypoints_to_heatmaps(target_keypoints, height, width, sigma),
            )
        )
        outputs["image"] = to_uint8(outputs["image"])
        return outputs

    return serve_keypoints, spec


def build_functions(generator, image_size, sigma=DEFAULT_SIGMA, num_keypoints=18, traced=True):
    """Returns {signature name: function} for both serving signatures.

    The generator is traced once, inside ``heatmaps``; ``serving_default`` calls it.

    Args:
      generator: a generator following the ``gfla_tf.models`` contract.
      image_size: (height, width) the generator takes.
      sigma: heatmap Gaussian standard deviation in pixels.
      num_keypoints: number of keypoints per pose.
      traced: wrap in ``tf.function`` with the input signatures fixed; False returns the
        plain functions, which run eagerly (no tracing cost, for one-off calls).

    Returns:
      {"serving_default": function, "heatmaps": function}.
    """

    def wrap(fn, spec):
        return tf.function(fn, input_signature=spec, autograph=False) if traced else fn

    heatmaps = wrap(*heatmap_fn(generator, image_size, num_keypoints))
    keypoints = wrap(*keypoint_fn(heatmaps, image_size, sigma, num_keypoints))
    return {SERVING_DEFAULT: keypoints, HEATMAP_SIGNATURE: heatmaps}
