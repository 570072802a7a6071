"""Keras 3 layers of GFLA (Ren et al., CVPR 2020); every layer is ``.keras`` serialisable."""

from gfla_tf.layers.encoder_block import EncoderBlock
from gfla_tf.layers.instance_normalization import InstanceNormalization
from gfla_tf.layers.jump import Jump
from gfla_tf.layers.local_attention import LocalAttention
from gfla_tf.layers.output_block import OutputBlock
from gfla_tf.layers.pose_prior_flow import PosePriorFlow
from gfla_tf.layers.res_block import ResBlock
from gfla_tf.layers.res_block_decoder import ResBlockDecoder
from gfla_tf.layers.res_block_encoder import ResBlockEncoder
from gfla_tf.layers.spectral_normalization import SpectralNormalization

__all__ = [
    "EncoderBlock",
    "InstanceNormalization",
    "Jump",
    "LocalAttention",
    "OutputBlock",
    "PosePriorFlow",
    "ResBlock",
    "ResBlockDecoder",
    "ResBlockEncoder",
    "SpectralNormalization",
]
