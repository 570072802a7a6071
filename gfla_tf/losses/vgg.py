"""Frozen VGG19 feature extractor for GFLA's perceptual, style and correctness losses.

The GFLA reference feeds images in [-1, 1] straight into VGG19 (no ImageNet mean/std or
BGR conversion); this module does the same. Keras' VGG19 convolution layers include their
ReLU, so ``block3_conv1`` is ``relu3_1``.

Reference: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; Ren et al., CVPR 2020.
"""

import os
import re

import keras

ALL_LAYERS = tuple(
    f"relu{block}_{conv}"
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for conv in range(1, convs + 1)
)
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


def build_vgg_extractor(weights="imagenet", layers=ALL_LAYERS, name="vgg19_features"):
    """Builds a frozen VGG19 returning the requested ReLU feature maps.

    Only the part of VGG19 up to the deepest requested layer is executed (the functional
    model keeps only the layers its outputs depend on).

    Args:
      weights: "imagenet" (Keras' ImageNet weights, downloaded into the Keras cache or
        found there), "random" (random initialisation: tests and the offline quickstart),
        or a path to a local VGG19 weights file (``.weights.h5`` or ``.h5`` without top).
      layers: iterable of names such as "relu3_1" (see ALL_LAYERS).
      name: name of the returned model.

    Returns:
      A non-trainable ``keras.Model`` mapping a [B, H, W, 3] image in [-1, 1] to a dict
      ``{layer_name: [B, h, w, C]}``.

    Raises:
      ValueError: if ``weights`` is neither "imagenet", "random" nor an existing file,
        or a layer name is unknown.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one VGG19 layer")
    keras_names = {layer: keras_layer_name(layer) for layer in layers}
    if weights == "random":
        source = None
    elif weights == "imagenet":
        source = "imagenet"
    elif isinstance(weights, str) and os.path.isfile(weights):
        source = weights
    else:
        raise ValueError(
            "weights must be 'imagenet', 'random' or the path of an existing VGG19 "
            f"weights file, got {weights!r}"
        )
    vgg = keras.applications.VGG19(include_top=False, weights=source, input_shape=(None, None, 3))
    outputs = {layer: vgg.get_layer(keras_names[layer]).output for layer in layers}
    model = keras.Model(vgg.input, outputs, name=name)
    model.trainable = False
    return model
