"""torchvision's Inception-v3 up to its 2048-d average pool, in Keras: GFLA's FID network.

The authors' ``script/inception.py`` computes FID activations with torchvision's
``inception_v3`` ImageNet weights, calling its blocks one by one (so the model's own
``transform_input`` is not applied) up to the final average pool. This port matches
torchvision's layer details, which differ from ``keras.applications.InceptionV3``:

* every ``BasicConv2d`` is a bias-free convolution, BatchNorm with eps 1e-3, ReLU, with
  PyTorch's explicit symmetric zero padding (``padding=1``, ``(0, 3)``, ...);
* the pooling branches of InceptionA/C/E average 3x3 windows with stride 1 and padding 1
  counting the padded zeros (PyTorch's ``count_include_pad=True`` default);
* max pools are 3x3 stride 2 without padding, the head is a global average.

Module names follow torchvision (``Mixed_5b.branch1x1.conv`` ...) so ``load_torch_weights``
maps a ``inception_v3().state_dict()`` (``.pth`` read without PyTorch, or ``.npz``) onto it.
The input preprocessing of the authors' protocol is in ``gfla_tf.evaluation.fid``.
"""

import keras
import numpy as np

from gfla_tf.pretrained.errors import WeightsUnavailableError
from gfla_tf.pretrained.files import find_weights
from gfla_tf.pretrained.torch_files import read_state_dict

ENV_VAR = "GFLA_INCEPTION_WEIGHTS"
# torchvision's own download of Inception_V3_Weights.IMAGENET1K_V1, then the docs' name.
FILE_NAMES = ("inception_v3_google-0cc3c7bd.pth", "inception_v3.pth")
HOW_TO = (
    "The paper's FID uses torchvision's ImageNet inception_v3. Save its state dict once "
    'where PyTorch is installed: python -c "import torch, torchvision; torch.save('
    "torchvision.models.inception_v3(weights='IMAGENET1K_V1').state_dict(), "
    "'inception_v3.pth')\" and pass --inception-weights inception_v3.pth (or set "
    f"${ENV_VAR}, or copy it to ~/.keras/gfla/inception_v3.pth); PyTorch is not needed to "
    "read it. See docs/evaluation.md."
)
FEATURE_DIM = 2048


def default_weights_path():
    """The torchvision Inception-v3 file: ``$GFLA_INCEPTION_WEIGHTS``, torch hub, ~/.keras/gfla.

    Raises:
      WeightsUnavailableError: none exists; the message says how to make the file.
    """
    return find_weights(ENV_VAR, FILE_NAMES, HOW_TO)


class _Builder:
    """Builds the functional graph and remembers each torchvision module's layers."""

    def __init__(self):
        self.modules = {}

    def conv(self, x, prefix, filters, kernel, stride=1, padding=0):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        name = prefix.replace(".", "_")
        # With stride 1, PyTorch's (k - 1) / 2 zero padding is exactly Keras' "same", which
        # saves a padded copy per layer.
        same = stride == 1 and all(2 * p == k - 1 for p, k in zip(padding, kernel))
        if any(padding) and not same:
            x = keras.layers.ZeroPadding2D(
                ((padding[0], padding[0]), (padding[1], padding[1])), name=f"{name}_pad"
            )(x)
        conv = keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same" if same else "valid",
            use_bias=False,
            name=f"{name}_conv",
        )
        norm = keras.layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")
        x = keras.layers.ReLU(name=f"{name}_relu")(norm(conv(x), training=False))
        self.modules[prefix] = (conv, norm)
        return x

    @staticmethod
    def avg_pool(x, name):
        # count_include_pad=True: pad with zeros, then average full 3x3 windows.
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        return keras.layers.AveragePooling2D(3, 1, padding="valid", name=name)(x)

    @staticmethod
    def max_pool(x, name):
        return keras.layers.MaxPooling2D(3, 2, padding="valid", name=name)(x)

    @staticmethod
    def concat(parts, name):
        return keras.layers.Concatenate(axis=-1, name=name)(parts)

    def inception_a(self, x, p, pool_features):
        b1 = self.conv(x, f"{p}.branch1x1", 64, 1)
        b5 = self.conv(x, f"{p}.branch5x5_1", 48, 1)
        b5 = self.conv(b5, f"{p}.branch5x5_2", 64, 5, padding=2)
        b3 = self.conv(x, f"{p}.branch3x3dbl_1", 64, 1)
        b3 = self.conv(b3, f"{p}.branch3x3dbl_2", 96, 3, padding=1)
        b3 = self.conv(b3, f"{p}.branch3x3dbl_3", 96, 3, padding=1)
        bp = self.avg_pool(x, f"{p}_avgpool")
        bp = self.conv(bp, f"{p}.branch_pool", pool_features, 1)
        return self.concat([b1, b5, b3, bp], p)

    def inception_b(self, x, p):
        b3 = self.conv(x, f"{p}.branch3x3", 384, 3, stride=2)
        bd = self.conv(x, f"{p}.branch3x3dbl_1", 64, 1)
        bd = self.conv(bd, f"{p}.branch3x3dbl_2", 96, 3, padding=1)
        bd = self.conv(bd, f"{p}.branch3x3dbl_3", 96, 3, stride=2)
        bp = self.max_pool(x, f"{p}_maxpool")
        return self.concat([b3, bd, bp], p)

    def inception_c(self, x, p, c7):
        b1 = self.conv(x, f"{p}.branch1x1", 192, 1)
        b7 = self.conv(x, f"{p}.branch7x7_1", c7, 1)
        b7 = self.conv(b7, f"{p}.branch7x7_2", c7, (1, 7), padding=(0, 3))
        b7 = self.conv(b7, f"{p}.branch7x7_3", 192, (7, 1), padding=(3, 0))
        bd = self.conv(x, f"{p}.branch7x7dbl_1", c7, 1)
        bd = self.conv(bd, f"{p}.branch7x7dbl_2", c7, (7, 1), padding=(3, 0))
        bd = self.conv(bd, f"{p}.branch7x7dbl_3", c7, (1, 7), padding=(0, 3))
        bd = self.conv(bd, f"{p}.branch7x7dbl_4", c7, (7, 1), padding=(3, 0))
        bd = self.conv(bd, f"{p}.branch7x7dbl_5", 192, (1, 7), padding=(0, 3))
        bp = self.avg_pool(x, f"{p}_avgpool")
        bp = self.conv(bp, f"{p}.branch_pool", 192, 1)
        return self.concat([b1, b7, bd, bp], p)

    def inception_d(self, x, p):
        b3 = self.conv(x, f"{p}.branch3x3_1", 192, 1)
        b3 = self.conv(b3, f"{p}.branch3x3_2", 320, 3, stride=2)
        b7 = self.conv(x, f"{p}.branch7x7x3_1", 192, 1)
        b7 = self.conv(b7, f"{p}.branch7x7x3_2", 192, (1, 7), padding=(0, 3))
        b7 = self.conv(b7, f"{p}.branch7x7x3_3", 192, (7, 1), padding=(3, 0))
        b7 = self.conv(b7, f"{p}.branch7x7x3_4", 192, 3, stride=2)
        bp = self.max_pool(x, f"{p}_maxpool")
        return self.concat([b3, b7, bp], p)

    def inception_e(self, x, p):
        b1 = self.conv(x, f"{p}.branch1x1", 320, 1)
        b3 = self.conv(x, f"{p}.branch3x3_1", 384, 1)
        b3 = self.concat(
            [
                self.conv(b3, f"{p}.branch3x3_2a", 384, (1, 3), padding=(0, 1)),
                self.conv(b3, f"{p}.branch3x3_2b", 384, (3, 1), padding=(1, 0)),
            ],
            f"{p}_3x3",
        )
        bd = self.conv(x, f"{p}.branch3x3dbl_1", 448, 1)
        bd = self.conv(bd, f"{p}.branch3x3dbl_2", 384, 3, padding=1)
        bd = self.concat(
            [
                self.conv(bd, f"{p}.branch3x3dbl_3a", 384, (1, 3), padding=(0, 1)),
                self.conv(bd, f"{p}.branch3x3dbl_3b", 384, (3, 1), padding=(1, 0)),
            ],
            f"{p}_3x3dbl",
        )
        bp = self.avg_pool(x, f"{p}_avgpool")
        bp = self.conv(bp, f"{p}.branch_pool", 192, 1)
        return self.concat([b1, b3, bd, bp], p)


def build_inception_v3(weights=None, input_size=299, name="inception_v3_torchvision"):
    """torchvision's Inception-v3 feature extractor (its blocks 0-3 and the average pool).

    Args:
      weights: None (random, for tests), a state dict (dict of PyTorch-named arrays), or
        the path of torchvision's ``inception_v3`` state dict (``.pth`` or ``.npz``).
      input_size: side of the square input (299 in the protocol; at least 75).
      name: the model name.

    Returns:
      A ``keras.Model`` from [B, input_size, input_size, 3] images already mapped the way
      the protocol feeds them (see ``gfla_tf.evaluation.fid``) to [B, 2048] features.
      Its ``torch_modules`` attribute maps each torchvision ``BasicConv2d`` name to its
      (Conv2D, BatchNormalization) layers.

    Raises:
      WeightsUnavailableError: the weights cannot be read or do not fit.
    """
    builder = _Builder()
    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = builder.conv(inputs, "Conv2d_1a_3x3", 32, 3, stride=2)
    x = builder.conv(x, "Conv2d_2a_3x3", 32, 3)
    x = builder.conv(x, "Conv2d_2b_3x3", 64, 3, padding=1)
    x = builder.max_pool(x, "maxpool1")
    x = builder.conv(x, "Conv2d_3b_1x1", 80, 1)
    x = builder.conv(x, "Conv2d_4a_3x3", 192, 3)
    x = builder.max_pool(x, "maxpool2")
    x = builder.inception_a(x, "Mixed_5b", 32)
    x = builder.inception_a(x, "Mixed_5c", 64)
    x = builder.inception_a(x, "Mixed_5d", 64)
    x = builder.inception_b(x, "Mixed_6a")
    x = builder.inception_c(x, "Mixed_6b", 128)
    x = builder.inception_c(x, "Mixed_6c", 160)
    x = builder.inception_c(x, "Mixed_6d", 160)
    x = builder.inception_c(x, "Mixed_6e", 192)
    x = builder.inception_d(x, "Mixed_7a")
    x = builder.inception_e(x, "Mixed_7b")
    x = builder.inception_e(x, "Mixed_7c")
    outputs = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.trainable = False
    model.torch_modules = builder.modules
    if weights is not None:
        load_torch_weights(model, weights)
    return model


def load_torch_weights(model, weights):
    """Sets a ``build_inception_v3`` model's weights from torchvision's state dict.

    Args:
      model: the model.
      weights: a dict of PyTorch-named arrays or a ``.pth``/``.npz`` path. The auxiliary
        classifier and the final ``fc`` are not used (and not read).

    Raises:
      WeightsUnavailableError: the file is unreadable, or a tensor is missing or has
        the wrong shape.
    """
    modules = model.torch_modules

    def keep(name):
        return name.rsplit(".", 2)[0] in modules

    if isinstance(weights, dict):
        tensors = weights
    else:
        try:
            tensors = read_state_dict(weights, keep=keep)
        except WeightsUnavailableError as error:
            raise WeightsUnavailableError(f"Inception-v3 weights: {error}. {HOW_TO}") from error
    missing = []
    for prefix, (conv, norm) in modules.items():
        names = [
            f"{prefix}.conv.weight",
            f"{prefix}.bn.weight",
            f"{prefix}.bn.bias",
            f"{prefix}.bn.running_mean",
            f"{prefix}.bn.running_var",
        ]
        if any(name not in tensors for name in names):
            missing += [name for name in names if name not in tensors]
            continue
        values = [np.asarray(tensors[name], np.float32) for name in names]
        kernel = np.transpose(values[0], (2, 3, 1, 0))
        for layer, new in ((conv, [kernel]), (norm, values[1:])):
            expected = [tuple(w.shape) for w in layer.get_weights()]
            if expected != [tuple(v.shape) for v in new]:
                raise WeightsUnavailableError(
                    f"Inception-v3 weights: {prefix} has shapes "
                    f"{[tuple(v.shape) for v in new]}, expected {expected}: not torchvision's "
                    "inception_v3"
                )
            layer.set_weights(new)
    if missing:
        raise WeightsUnavailableError(
            f"not a torchvision inception_v3 state dict: {len(missing)} tensors missing "
            f"(e.g. {missing[0]}). {HOW_TO}"
        )
