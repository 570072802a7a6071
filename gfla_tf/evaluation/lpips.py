"""LPIPS (Zhang et al., CVPR 2018), AlexNet variant v0.1, as a Keras model.

The network is the ``lpips`` package's ``LPIPS(net="alex")``: a fixed scaling layer, the
five ReLU outputs of torchvision's AlexNet feature stack, unit normalisation along the
channels, squared differences, non-negative 1x1 "linear" calibration layers, a spatial
mean and a sum over the five layers.

Weights. Nothing is bundled and nothing is downloaded by this module. ``LPIPS.load``
accepts:

* ``.npz``: the PyTorch tensors by their PyTorch names, e.g. made with
  ``np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`` from torchvision's
  AlexNet state dict (``features.0.weight`` ...) merged with the lpips package's
  ``alex.pth`` (``lin0.model.1.weight`` ...); a full ``lpips.LPIPS`` state dict
  (``net.slice1.0.weight`` ...) works too. ``convert_torch_weights`` writes such a file.
* ``.weights.h5``: this model's own ``save_weights`` file.
* ``.pth``/``.pt``: a PyTorch state dict, read without PyTorch
  (``gfla_tf.pretrained.read_state_dict``).
* ``"default"``: ``$GFLA_LPIPS_WEIGHTS``, else ``$KERAS_HOME/gfla/lpips_alex_v0.1.npz``
  (``~/.keras`` by default), else converted there from the installed ``lpips`` and
  ``torchvision`` packages (torchvision fetches AlexNet the way it always does); if none
  of these is possible, ``WeightsUnavailableError`` says how to supply a file.

Command line converter::

    python -m gfla_tf.evaluation.lpips --lin alex.pth --alexnet alexnet-owt-7be5be79.pth \
        --out lpips_alex_v0.1.npz
"""

import argparse
import logging
import os
import re
import sys

import keras
import numpy as np
import tensorflow as tf

from gfla_tf import io as gfla_io
from gfla_tf.pretrained.errors import WeightsUnavailableError
from gfla_tf.pretrained.files import cache_dir
from gfla_tf.pretrained.torch_files import read_state_dict

logger = logging.getLogger(__name__)

# torchvision AlexNet ``features`` indices of the five convolutions, and their shapes as
# (kernel, stride, padding, filters).
_CONV_INDICES = (0, 3, 6, 8, 10)
_CONV_SPECS = ((11, 4, 2, 64), (5, 1, 2, 192), (3, 1, 1, 384), (3, 1, 1, 256), (3, 1, 1, 256))
CHANNELS = tuple(spec[3] for spec in _CONV_SPECS)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
DEFAULT_FILENAME = "lpips_alex_v0.1.npz"
_HELP = (
    "LPIPS needs the AlexNet + linear-layer weights of the lpips package. Supply a local "
    "file (--lpips-weights PATH, or $GFLA_LPIPS_WEIGHTS): a .npz of the PyTorch tensors, "
    "this model's .weights.h5, or a .pth state dict. Without PyTorch, "
    "'python -m gfla_tf.evaluation.lpips --lin alex.pth --alexnet alexnet-owt-7be5be79.pth "
    "--out lpips_alex_v0.1.npz' converts the lpips package's alex.pth plus torchvision's "
    "AlexNet checkpoint."
)


def build_alexnet_features(name="alexnet_features"):
    """AlexNet's convolutional stack in the torchvision layout, returning the 5 ReLU outputs.

    conv1 11x11 stride 4 padding 2 (64), max-pool 3 stride 2, conv2 5x5 padding 2 (192),
    max-pool 3 stride 2, conv3 3x3 (384), conv4 3x3 (256), conv5 3x3 (256).

    Args:
      name: the model name.

    Returns:
      A functional ``keras.Model`` from [B, H, W, 3] to a list of 5 feature maps.
    """
    inputs = keras.Input((None, None, 3))
    x = inputs
    outputs = []
    for i, (kernel, stride, padding, filters) in enumerate(_CONV_SPECS):
        if i in (1, 2):
            x = keras.layers.MaxPooling2D(3, 2, padding="valid", name=f"pool{i}")(x)
        # PyTorch zero padding, then a valid convolution (Keras 'same' pads differently
        # for strided convolutions).
        x = keras.layers.ZeroPadding2D(padding, name=f"pad{i + 1}")(x)
        x = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="valid", name=f"conv{i + 1}"
        )(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        outputs.append(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="gfla")
class LPIPS(keras.Model):
    """Learned perceptual image patch similarity, AlexNet v0.1.

    Called on a pair ``(a, b)`` of [B, H, W, 3] images in [-1, 1] (uint8 is converted),
    returns the [B] distances (0 for identical images, symmetric, non-negative).

    Args:
      weights: ``None`` for random weights (tests; the calibration weights are drawn
        non-negative), or anything ``LPIPS.load`` accepts (a file path or "default").
      **kwargs: passed to ``keras.Model``.

    Raises:
      WeightsUnavailableError: ``weights`` cannot be found or read.

    Example:
      >>> metric = LPIPS(weights="lpips_alex_v0.1.npz")
      >>> distances = metric((generated, target))  # [B]

    Reference:
      Zhang, Isola, Efros, Shechtman, Wang. The Unreasonable Effectiveness of Deep
      Features as a Perceptual Metric. CVPR 2018. Used by Ren et al., Deep Image Spatial
      Transformation for Person Image Generation, CVPR 2020 (GFLA) for evaluation.
    """

    def __init__(self, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.weights_source = weights
        self.features = build_alexnet_features()
        self.linear = [
            keras.layers.Conv2D(
                1,
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0 / channels),
                kernel_constraint=keras.constraints.NonNeg(),
                name=f"lin{i}",
            )
            for i, channels in enumerate(CHANNELS)
        ]
        self.features.build((None, None, None, 3))
        for layer, channels in zip(self.linear, CHANNELS):
            layer.build((None, None, None, channels))
        self.built = True
        self.trainable = False
        if weights is not None:
            self.load(weights)

    def get_config(self):
        config = super().get_config()
        # Weights travel with a saved model; a path would not resolve elsewhere.
        config.update({"weights": None})
        return config

    def _scale(self, images):
        if images.dtype == tf.uint8:
            images = tf.cast(images, tf.float32) / 127.5 - 1.0
        images = tf.cast(images, tf.float32)
        return (images - tf.constant(SHIFT)) / tf.constant(SCALE)

    def call(self, inputs, training=False):
        first, second = inputs
        first = self._scale(first)
        second = self._scale(second)
        if first.shape.rank != 4 or first.shape[-1] != 3:
            raise ValueError(f"LPIPS inputs must be [B, H, W, 3] images, got {first.shape}")
        batch = tf.shape(first)[0]
        # One pass over both images halves the number of small convolution launches.
        features = self.features(tf.concat([first, second], axis=0), training=False)
        total = 0.0
        for feature, linear in zip(features, self.linear):
            norm = tf.sqrt(tf.reduce_sum(tf.square(feature), axis=-1, keepdims=True))
            feature = feature / (norm + 1e-10)
            diff = tf.square(feature[:batch] - feature[batch:])
            total += tf.reduce_mean(linear(diff), axis=[1, 2, 3])
        return total

    # -- weights -----------------------------------------------------------------------

    def load(self, weights):
        """Loads weights from a file (see the module docstring) or "default".

        Args:
          weights: a path to ``.npz``, ``.weights.h5``, ``.pth``/``.pt``, or "default".

        Raises:
          WeightsUnavailableError: the file is missing, unreadable or incomplete.
        """
        path = resolve_default_weights() if weights == "default" else os.fspath(weights)
        if not os.path.exists(path):
            raise WeightsUnavailableError(f"LPIPS weights file {path!r} does not exist. {_HELP}")
        if path.endswith(".weights.h5"):
            self.load_weights(path)
            return
        if path.endswith(".npz"):
            with np.load(path) as data:
                tensors = {key: data[key] for key in data.files}
        elif path.endswith((".pth", ".pt")):
            tensors = _read_torch(path)
        else:
            raise WeightsUnavailableError(
                f"LPIPS weights {path!r}: expected a .npz, .weights.h5 or .pth file. {_HELP}"
            )
        self.set_torch_weights(tensors)

    def set_torch_weights(self, tensors):
        """Sets the weights from PyTorch-named, PyTorch-layout numpy arrays.

        Args:
          tensors: dict with the AlexNet ``features.{0,3,6,8,10}.{weight,bias}`` (or
            ``net.sliceN.I.*``) and ``lin{0..4}.model.1.weight`` (or ``lin{0..4}.model.0``
            / ``lin{0..4}.weight``) arrays.

        Raises:
          WeightsUnavailableError: a tensor is missing or has the wrong shape.
        """
        convs, lins = _index_torch_names(tensors)
        missing = [f"features.{i}.weight/bias" for i in _CONV_INDICES if i not in convs] + [
            f"lin{i}.model.1.weight" for i in range(5) if i not in lins
        ]
        if missing:
            raise WeightsUnavailableError(
                f"LPIPS weights are incomplete; missing {', '.join(missing)}. {_HELP}"
            )
        for n, index in enumerate(_CONV_INDICES):
            weight, bias = convs[index]
            layer = self.features.get_layer(f"conv{n + 1}")
            kernel = np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0))
            _assign(layer, [kernel, np.asarray(bias, np.float32)])
        for n, layer in enumerate(self.linear):
            weight = np.asarray(lins[n], np.float32).reshape(1, -1)
            _assign(layer, [np.transpose(weight).reshape(1, 1, -1, 1)])


def _assign(layer, values):
    expected = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(v.shape) for v in values]
    if expected != got:
        raise WeightsUnavailableError(
            f"LPIPS weights: layer {layer.name} expects shapes {expected}, file has {got}"
        )
    layer.set_weights(values)


def _index_torch_names(tensors):
    """Finds the conv (by torchvision index) and linear-layer tensors among the names."""
    convs, lins = {}, {}
    for key, value in tensors.items():
        conv = re.search(r"(?:features|slice\d)\.(\d+)\.(weight|bias)$", key)
        lin = re.match(r"(?:.*\.)?lin(\d)\.(?:model\.\d\.)?weight$", key)
        if conv and not lin:
            index = int(conv.group(1))
            entry = convs.setdefault(index, [None, None])
            entry[0 if conv.group(2) == "weight" else 1] = value
        elif lin:
            lins[int(lin.group(1))] = value
    convs = {k: v for k, v in convs.items() if v[0] is not None and v[1] is not None}
    return convs, lins


def _read_torch(path):
    try:
        return read_state_dict(path)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(f"LPIPS weights: {error}. {_HELP}") from error


def resolve_default_weights():
    """Finds (or converts, once) the default LPIPS weights file.

    Returns:
      A path to an existing weights file.

    Raises:
      WeightsUnavailableError: no file is configured and the lpips/torchvision packages
        are not both importable (or fail), with instructions.
    """
    env = os.environ.get("GFLA_LPIPS_WEIGHTS")
    if env:
        if not os.path.exists(env):
            raise WeightsUnavailableError(
                f"$GFLA_LPIPS_WEIGHTS points to {env!r}, which does not exist. {_HELP}"
            )
        return env
    cached = os.path.join(cache_dir(), DEFAULT_FILENAME)
    if os.path.exists(cached):
        return cached
    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    # A torchvision built for another torch raises RuntimeError on import, not ImportError.
    except Exception as error:  # noqa: BLE001 - any import failure: cannot convert here
        raise WeightsUnavailableError(
            f"no LPIPS weights at {cached!r} and the lpips/torchvision packages are not "
            f"installed to convert them from. {_HELP}"
        ) from error
    try:
        return convert_from_installed_packages(cached)
    except Exception as error:  # noqa: BLE001 - any failure here means "not available"
        raise WeightsUnavailableError(
            f"converting the LPIPS weights from the lpips/torchvision packages failed "
            f"({error}). {_HELP}"
        ) from error


def convert_from_installed_packages(output):
    """Converts the lpips package's AlexNet v0.1 weights to ``output`` (.npz).

    Uses ``lpips.LPIPS(net="alex", version="0.1")``, which loads the package's bundled
    linear layers and torchvision's ImageNet AlexNet (fetched by torchvision as usual).

    Args:
      output: the .npz path to write.

    Returns:
      ``output``.
    """
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", verbose=False)
    tensors = {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    return save_npz(tensors, output)


def convert_torch_weights(lin_path, alexnet_path, output):
    """Merges the lpips ``alex.pth`` and torchvision's AlexNet checkpoint into one .npz.

    Args:
      lin_path: the lpips package's ``weights/v0.1/alex.pth`` (linear layers), or a full
        ``lpips.LPIPS`` state dict (then ``alexnet_path`` may be None).
      alexnet_path: torchvision's ``alexnet-owt-7be5be79.pth``, or None.
      output: the .npz path to write.

    Returns:
      ``output``.

    Raises:
      WeightsUnavailableError: torch is missing or the tensors are incomplete.
    """
    tensors = _read_torch(lin_path)
    if alexnet_path:
        tensors.update(_read_torch(alexnet_path))
    LPIPS().set_torch_weights(tensors)  # validates names and shapes before writing
    return save_npz(tensors, output)


def save_npz(tensors, output):
    """Writes a dict of arrays to ``output`` atomically; returns ``output``."""
    with gfla_io.atomic_path(output) as tmp, open(tmp, "wb") as file:
        np.savez(file, **{key: np.asarray(value) for key, value in tensors.items()})
    return output


def main(argv=None):
    """Command line converter from the PyTorch files to .npz; returns an exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m gfla_tf.evaluation.lpips",
        description="Convert the lpips package's AlexNet weights to a .npz for gfla-tf.",
    )
    parser.add_argument("--lin", required=True, help="lpips weights/v0.1/alex.pth")
    parser.add_argument("--alexnet", help="torchvision alexnet-owt-7be5be79.pth")
    parser.add_argument("--out", required=True, help="output .npz")
    args = parser.parse_args(argv)
    try:
        path = convert_torch_weights(args.lin, args.alexnet, args.out)
    except WeightsUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
