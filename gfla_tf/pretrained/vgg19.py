"""torchvision's ImageNet VGG19 (the GFLA losses' network) in the Keras VGG19 layout.

torchvision's ``vgg19().features`` is the same stack as
``keras.applications.VGG19(include_top=False)``: 3x3 convolutions with padding 1 (Keras
"same"), ReLU, 2x2 max pooling. Only the weights differ in layout: PyTorch kernels are
(out, in, kh, kw), Keras' (kh, kw, in, out). The classifier is not needed and not read.
"""

import numpy as np

from gfla_tf.pretrained.errors import WeightsUnavailableError
from gfla_tf.pretrained.files import find_weights
from gfla_tf.pretrained.torch_files import read_state_dict

# torchvision ``features`` index of each convolution, by Keras layer name.
CONV_INDICES = {
    f"block{block}_conv{conv + 1}": index
    for block, indices in (
        (1, (0, 2)),
        (2, (5, 7)),
        (3, (10, 12, 14, 16)),
        (4, (19, 21, 23, 25)),
        (5, (28, 30, 32, 34)),
    )
    for conv, index in enumerate(indices)
}
ENV_VAR = "GFLA_VGG19_WEIGHTS"
# torchvision's own download of VGG19_Weights.IMAGENET1K_V1, then the name the docs suggest.
FILE_NAMES = ("vgg19-dcbb9e9d.pth", "vgg19.pth")
HOW_TO = (
    "The GFLA losses use torchvision's ImageNet VGG19. Save its state dict once where "
    'PyTorch is installed: python -c "import torch, torchvision; torch.save('
    "torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), 'vgg19.pth')\" and set "
    f"config.loss.vgg_weights to that path (or put it in ${ENV_VAR}, or copy it to "
    "~/.keras/gfla/vgg19.pth); PyTorch is not needed to read it. See docs/evaluation.md."
)


def default_weights_path():
    """The torchvision VGG19 file for ``vgg_weights="torchvision"``.

    Returns:
      ``$GFLA_VGG19_WEIGHTS``, else torchvision's downloaded ``vgg19-dcbb9e9d.pth`` in
      ``$TORCH_HOME/hub/checkpoints``, else ``~/.keras/gfla/vgg19.pth`` (first that exists).

    Raises:
      WeightsUnavailableError: none exists; the message says how to make the file.
    """
    return find_weights(ENV_VAR, FILE_NAMES, HOW_TO)


def keras_weights_from_torch(tensors, layers=None):
    """Converts torchvision VGG19 tensors to Keras ``[kernel, bias]`` per conv layer.

    Args:
      tensors: dict of PyTorch-named arrays: ``features.{i}.weight`` / ``.bias`` (a
        ``vgg19().state_dict()``; a ``features`` state dict without the prefix works too).
      layers: Keras layer names to convert (default: all 16 convolutions).

    Returns:
      dict from Keras layer name (``block3_conv1``) to ``[kernel (kh, kw, in, out),
      bias (out,)]`` float32 arrays.

    Raises:
      WeightsUnavailableError: a tensor is missing or is not a 3x3 convolution.
    """
    layers = tuple(CONV_INDICES) if layers is None else tuple(layers)
    converted = {}
    for layer in layers:
        index = CONV_INDICES[layer]
        names = [f"features.{index}.weight", f"features.{index}.bias"]
        found = [tensors.get(name, tensors.get(name[len("features.") :])) for name in names]
        if any(value is None for value in found):
            raise WeightsUnavailableError(
                f"not a torchvision vgg19 state dict: {names[0]} / .bias missing. {HOW_TO}"
            )
        weight, bias = (np.asarray(value, np.float32) for value in found)
        if weight.ndim != 4 or weight.shape[2:] != (3, 3):
            raise WeightsUnavailableError(
                f"{names[0]} has shape {weight.shape}, expected (out, in, 3, 3): not VGG19"
            )
        converted[layer] = [np.transpose(weight, (2, 3, 1, 0)), bias]
    return converted


def read_torchvision_vgg19(path, layers=None):
    """Reads a torchvision VGG19 ``.pth`` (or ``.npz`` of its state dict) for Keras.

    Args:
      path: the file (PyTorch is not needed to read it).
      layers: Keras conv layer names wanted (default all).

    Returns:
      dict as ``keras_weights_from_torch`` returns.

    Raises:
      WeightsUnavailableError: the file is missing, unreadable or not VGG19.
    """
    wanted = tuple(CONV_INDICES) if layers is None else tuple(layers)
    indices = {CONV_INDICES[layer] for layer in wanted}

    def keep(name):
        parts = name.split(".")
        return len(parts) >= 2 and parts[-2].isdigit() and int(parts[-2]) in indices

    try:
        tensors = read_state_dict(path, keep=keep)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(f"VGG19 weights: {error}. {HOW_TO}") from error
    return keras_weights_from_torch(tensors, wanted)
