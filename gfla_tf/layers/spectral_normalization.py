"""Spectral normalisation with PyTorch's semantics (``torch.nn.utils.spectral_norm``).

``keras.layers.SpectralNormalization`` differs from PyTorch in ways that matter for GFLA
and its checkpoints: it overwrites the wrapped kernel with the normalised kernel on every
training step (so the trainable weight is no longer ``weight_orig``), it keeps only ``u``
(no ``v``, so a checkpoint's ``weight_v`` cannot be held), and at inference it uses the
kernel as stored instead of ``weight_orig / sigma(u, v)``. This wrapper keeps the
trainable kernel as ``weight_orig`` and normalises on the fly.
"""

import keras
import numpy as np
from keras import ops


def _unit_normal(shape, dtype=None):
    x = np.random.standard_normal(shape)
    return (x / max(np.linalg.norm(x), 1e-12)).astype(dtype or "float32")


@keras.saving.register_keras_serializable(package="gfla")
class SpectralNormalization(keras.layers.Wrapper):
    """Divides the wrapped layer's kernel by its largest singular value.

    The kernel is viewed as the matrix ``W`` of shape (out, in * kh * kw) as in PyTorch
    (here stored as its transpose, rows ordered (kh, kw, in)). In training, each call runs
    ``power_iterations`` steps ``v = normalize(W^T u)``, ``u = normalize(W v)`` and stores u
    and v (no gradient flows through them); in inference the stored u and v are used as is.
    Then ``sigma = u^T W v`` and the layer computes with ``W / sigma``; gradients flow
    through sigma as in PyTorch.

    Args:
      layer: a ``keras.layers.Conv2D`` or ``keras.layers.Dense`` to wrap.
      power_iterations: power iteration steps per training call (1 in GFLA).
      epsilon: floor of the norms in the normalisation (1e-12 as in PyTorch).
      **kwargs: base layer arguments.

    Example:
      >>> conv = SpectralNormalization(keras.layers.Conv2D(32, 3, padding="same"))
      >>> y = conv(np.zeros((1, 16, 16, 3), "float32"), training=True)

    Reference:
      Miyato et al., "Spectral Normalization for Generative Adversarial Networks",
      ICLR 2018; used on every discriminator conv in GFLA (Ren et al., CVPR 2020).
    """

    def __init__(self, layer, power_iterations=1, epsilon=1e-12, **kwargs):
        super().__init__(layer, **kwargs)
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            raise ValueError(
                f"layer must be a keras.layers.Conv2D or Dense, got {type(layer).__name__}"
            )
        if int(power_iterations) < 1:
            raise ValueError(f"power_iterations must be >= 1, got {power_iterations!r}")
        self.power_iterations = int(power_iterations)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernel_shape = self.layer.kernel.shape
        rows = int(np.prod(kernel_shape[:-1]))
        self.vector_u = self.add_weight(
            name="vector_u",
            shape=(kernel_shape[-1],),
            initializer=_unit_normal,
            trainable=False,
            dtype="float32",
        )
        self.vector_v = self.add_weight(
            name="vector_v",
            shape=(rows,),
            initializer=_unit_normal,
            trainable=False,
            dtype="float32",
        )

    def _normalize(self, x):
        return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), self.epsilon)

    def normalized_kernel(self, training=False):
        """Returns ``kernel / sigma``, running the power iteration when ``training``."""
        kernel = ops.cast(self.layer.kernel, "float32")
        matrix = ops.reshape(kernel, (-1, kernel.shape[-1]))  # W^T: (in*kh*kw, out)
        u = ops.convert_to_tensor(self.vector_u)
        v = ops.convert_to_tensor(self.vector_v)
        if training:
            w_const = ops.stop_gradient(matrix)
            for _ in range(self.power_iterations):
                v = self._normalize(ops.matmul(w_const, u))
                u = self._normalize(ops.matmul(v, w_const))
            u = ops.stop_gradient(u)
            v = ops.stop_gradient(v)
            self.vector_u.assign(u)
            self.vector_v.assign(v)
        sigma = ops.sum(u * ops.matmul(v, matrix))
        return kernel / sigma

    def call(self, inputs, training=None):
        kernel = ops.cast(self.normalized_kernel(bool(training)), self.compute_dtype)
        layer = self.layer
        if isinstance(layer, keras.layers.Conv2D):
            outputs = ops.conv(
                inputs,
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
        else:
            outputs = ops.matmul(inputs, kernel)
        if layer.use_bias:
            outputs = outputs + ops.cast(layer.bias, self.compute_dtype)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(power_iterations=self.power_iterations, epsilon=self.epsilon)
        return config
