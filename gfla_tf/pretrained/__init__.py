"""Pretrained networks of the GFLA recipe, read from torchvision's files.

The authors' losses and metrics run on torchvision's ImageNet networks (VGG19 for the
losses, Inception-v3 for FID, AlexNet inside LPIPS). Their weights are PyTorch state dicts;
``read_state_dict`` reads those ``.pth`` files without PyTorch, and the converters map
them onto this project's Keras models. Nothing is downloaded.
"""

from gfla_tf.pretrained.errors import WeightsUnavailableError
from gfla_tf.pretrained.files import cache_dir, find_weights, keras_home, torch_hub_checkpoints
from gfla_tf.pretrained.torch_files import read_state_dict
from gfla_tf.pretrained.vgg19 import keras_weights_from_torch, read_torchvision_vgg19

__all__ = [
    "WeightsUnavailableError",
    "cache_dir",
    "find_weights",
    "keras_home",
    "keras_weights_from_torch",
    "read_state_dict",
    "read_torchvision_vgg19",
    "torch_hub_checkpoints",
]
