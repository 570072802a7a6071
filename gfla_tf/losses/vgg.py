"""Frozen VGG19 feature extractor for GFLA's perceptual, style and correctness losses.

Two sets of ImageNet weights exist, and each expects its own input:

* torchvision's VGG19 (the GFLA recipe): the authors feed it the generator's [-1, 1] RGB
  images as they are, with no ImageNet mean/std; the loss weights (content 0.5, style 500,
  correctness 5 / 20) are tuned to the feature scale that gives. ``weights="torchvision"``
  (the default file, see ``gfla_tf.pretrained.vgg19.default_weights_path``) or the path
  of its ``.pth`` / ``.npz`` state dict; read without PyTorch.
* Keras' VGG19 (``weights="imagenet"`` or a Keras ``.h5`` file): a different (Caffe)
  training run that expects BGR, ImageNet-mean-subtracted, 0-255 input. The extractor
  converts the [-1, 1] RGB images to that (``(x + 1) * 127.5``, RGB -> BGR, minus the
  mean), as ``keras.applications.vgg19.preprocess_input`` does. Its features differ from
  torchvision's in scale and content: NOT the paper's recipe.

Keras' VGG19 convolution layers include their ReLU, so ``block3_conv1`` is ``relu3_1``.

Reference: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; Ren et al., CVPR 2020.
"""

import os
import re

import keras

from gfla_tf.pretrained import vgg19 as torchvision_vgg19
from gfla_tf.pretrained.errors import WeightsUnavailableError

ALL_LAYERS = tuple(
    f"relu{block}_{conv}"
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for conv in range(1, convs + 1)
)
# keras.applications.vgg19.preprocess_input's BGR ImageNet mean (caffe mode).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_SUFFIXES = (".pth", ".pt", ".npz")
_NAME = re.compile(r"^relu([1-5])_([1-4])$")


def keras_layer_name(layer):
    """Maps "relu3_1" to Keras' "block3_conv1".

    Args:
      layer: a name in ALL_LAYERS.

    Returns:
      The Keras VGG19 layer name.

    Raises:
      ValueError: if ``layer`` is not a VGG19 ReLU name.
    """
    match = _NAME.match(layer)
    if not match or layer not in ALL_LAYERS:
        raise ValueError(f"unknown VGG19 layer {layer!r}; expected one of {ALL_LAYERS}")
    return f"block{match.group(1)}_conv{match.group(2)}"


def input_convention(weights):
    """How images are fed to the VGG19 of ``weights``.

    Args:
      weights: as for ``build_vgg_extractor``.

    Returns:
      "torchvision" ([-1, 1] RGB as is: torchvision weights and random ones) or "caffe"
      (Keras' weights: BGR, 0-255, mean-subtracted).
    """
    if weights == "imagenet":
        return "caffe"
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".h5"):
        return "caffe"
    return "torchvision"


def _resolve(weights):
    """Returns (keras weights argument, torchvision file or None)."""
    if weights == "random":
        return None, None
    if weights == "imagenet":
        return "imagenet", None
    if weights == "torchvision":
        return None, torchvision_vgg19.default_weights_path()
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if path.endswith(TORCH_SUFFIXES):
            if not os.path.isfile(path):
                raise WeightsUnavailableError(
                    f"VGG19 weights file {path!r} does not exist. {torchvision_vgg19.HOW_TO}"
                )
            return None, path
        if path.endswith(".h5") and os.path.isfile(path):
            return path, None
    raise WeightsUnavailableError(
        "VGG19 weights must be 'torchvision' (the paper's), the path of torchvision's vgg19 "
        "state dict (.pth/.npz), 'imagenet' or a Keras .h5 file (Keras' weights, not the "
        f"paper's), or 'random'; got {weights!r}. {torchvision_vgg19.HOW_TO}"
    )


def build_vgg_extractor(weights="torchvision", layers=ALL_LAYERS, name="vgg19_features"):
    """Builds a frozen VGG19 returning the requested ReLU feature maps.

    Only the part of VGG19 up to the deepest requested layer is executed (the functional
    model keeps only the layers its outputs depend on).

    Args:
      weights: "torchvision" (torchvision's ImageNet VGG19 from the default file: the
        paper's recipe), a path to torchvision's ``vgg19`` state dict (``.pth``/``.pt``,
        or ``.npz`` of its arrays), "imagenet" (Keras' ImageNet weights, from the Keras
        cache or downloaded), a Keras VGG19 ``.h5`` / ``.weights.h5`` file without top,
        or "random" (tests and the offline quickstart). See the module docstring for the
        input each expects; the extractor always takes [-1, 1] RGB.
      layers: iterable of names such as "relu3_1" (see ALL_LAYERS).
      name: name of the returned model.

    Returns:
      A non-trainable ``keras.Model`` mapping a [B, H, W, 3] RGB image in [-1, 1] to a
      dict ``{layer_name: [B, h, w, C]}``.

    Raises:
      WeightsUnavailableError: (a ``ValueError``) the weights cannot be found or read;
        the message says how to get torchvision's file.
      ValueError: a layer name is unknown.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one VGG19 layer")
    keras_names = {layer: keras_layer_name(layer) for layer in layers}
    keras_source, torch_file = _resolve(weights)
    vgg = keras.applications.VGG19(
        include_top=False, weights=keras_source, input_shape=(None, None, 3)
    )
    if torch_file is not None:
        converted = torchvision_vgg19.read_torchvision_vgg19(torch_file)
        for layer_name, values in converted.items():
            vgg.get_layer(layer_name).set_weights(values)
    outputs = {layer: vgg.get_layer(keras_names[layer]).output for layer in layers}
    features = keras.Model(vgg.input, outputs, name=name)
    if input_convention(weights) == "caffe":
        inputs = keras.Input((None, None, 3), name="rgb_signed_unit")
        bgr = keras.ops.flip((inputs + 1.0) * 127.5, axis=-1)
        features = keras.Model(inputs, features(bgr - keras.ops.array(CAFFE_BGR_MEAN)), name=name)
    features.trainable = False
    return features
