"""``GFLATrainer``: the two-stage GFLA training procedure as a ``keras.Model``.

Stage 1 trains the global flow field estimator F alone with the sampling correctness and
affine regularisation losses. Stage 2 trains the whole generator (F keeps training)
against an LSGAN discriminator: every step updates the discriminator first, then the
generator with L1, correctness, adversarial, regularisation, content and style losses.

Every loss is computed per example and reduced with ``tf.nn.compute_average_loss`` over
the GLOBAL batch, so gradients summed over replicas by the optimizers equal single-device
gradients on the global batch under any ``tf.distribute`` strategy. The step has no
host-side Python and uses only TF ops (XLA/TPU compatible when the generator's attention
op is the reference implementation).

Reference: Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
CVPR 2020.
"""

import keras
import tensorflow as tf

from gfla_tf import losses
from gfla_tf.losses import pixel as pixel_losses
from gfla_tf.models.common import INPUT_KEYS
from gfla_tf.training import compat

STAGE1_LOSSES = (
    "correctness",
    "regularization",
    "flow_supervision",
    "warp_correctness",
    "mask_visibility",
)
STAGE2_LOSSES = (
    "l1",
    "correctness",
    "adversarial",
    "regularization",
    "content",
    "style",
    "flow_supervision",
    "warp_correctness",
    "person_l1",
    "mask_visibility",
)
VGG_LOSSES = ("correctness", "content", "style")


def _with_gradients(grads, variables):
    # The mask heads get no gradient in stage 1 (the masks have no loss of their own).
    return [(g, v) for g, v in zip(grads, variables) if g is not None]


def _loss_layers(attention_scales):
    return tuple(losses.vgg_layer_for_scale(int(s)) for s in attention_scales)


def required_vgg_layers(stage, attention_scales, loss_weights=None):
    """VGG layers the trainer needs for a stage.

    Args:
      stage: 1 or 2.
      attention_scales: downsampling factor of each flow, e.g. [8, 4].
      loss_weights: optional dict of the stage's loss weights; the layers of a loss whose
        weight is 0 are left out, so the extractor runs only as deep as needed.

    Returns:
      Tuple of layer names (unique, in VGG order); empty when no weighted loss needs VGG
      (then the trainer runs without a VGG extractor).
    """

    def used(name):
        return loss_weights is None or bool(loss_weights.get(name, 0.0))

    names = set(_loss_layers(attention_scales)) if used("correctness") else set()
    if stage == 2:
        if used("content"):
            names |= set(losses.CONTENT_LAYERS)
        if used("style"):
            names |= set(losses.STYLE_LAYERS)
    return tuple(name for name in losses.ALL_LAYERS if name in names)


@keras.saving.register_keras_serializable(package="gfla")
class GFLATrainer(compat.DistributedFitMixin, keras.Model):
    """Trains a GFLA generator (stage 1: flow estimator only; stage 2: everything).

    Args:
      generator: the GFLA generator (``gfla_tf.models.build_generator``): called with
        ``{"source_image", "source_pose", "target_pose"}``, returns ``{"image", "flows",
        "masks"}``; has ``flow_estimator``, ``attention_scales`` and ``kernel_sizes``.
      discriminator: image -> patch map model; may be None for stage 1.
      vgg_extractor: frozen model returning a dict of VGG19 ReLU features
        (``gfla_tf.losses.build_vgg_extractor``) with at least the layers of
        :func:`required_vgg_layers`; None when no weighted loss uses VGG features
        (correctness, content and style all 0).
      stage: 1 or 2.
      global_batch_size: global batch used to average per-example losses; None uses the
        per-replica batch times the number of replicas.
      correctness_chunk: target positions per chunk of the correctness loss's max over
        source positions (bounds its memory, see ``gfla_tf.losses.max_cosine_similarity``).
      **kwargs: passed to ``keras.Model``.

    Example:

    ```python
    trainer = GFLATrainer(generator, None, vgg, stage=1, global_batch_size=8)
    trainer.compile(g_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.999),
                    loss_weights={"correctness": 20.0, "regularization": 0.01})
    trainer.fit(dataset, epochs=10, steps_per_epoch=1000)
    ```

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
      CVPR 2020.
    """

    def __init__(
        self,
        generator,
        discriminator,
        vgg_extractor,
        stage,
        global_batch_size=None,
        correctness_chunk=1024,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        if stage == 2 and discriminator is None:
            raise ValueError("stage 2 needs a discriminator, got discriminator=None")
        for attr in ("flow_estimator", "attention_scales", "kernel_sizes"):
            if not hasattr(generator, attr):
                raise ValueError(f"generator must have a `{attr}` attribute (see gfla_tf.models)")
        self.generator = generator
        self.discriminator = discriminator
        self.vgg_extractor = vgg_extractor
        self.stage = int(stage)
        self.global_batch_size = global_batch_size
        self.correctness_chunk = int(correctness_chunk)
        self.attention_scales = [int(s) for s in generator.attention_scales]
        self.kernel_sizes = [int(k) for k in generator.kernel_sizes]
        if len(self.attention_scales) != len(self.kernel_sizes):
            raise ValueError(
                "generator.attention_scales and generator.kernel_sizes must have the same "
                f"length, got {self.attention_scales} and {self.kernel_sizes}"
            )
        self.flow_layers = _loss_layers(self.attention_scales)
        self.g_optimizer = None
        self.d_optimizer = None
        self.loss_weights = {}

    # ----------------------------------------------------------------------------------
    # Keras plumbing.

    def compile(self, g_optimizer, d_optimizer=None, loss_weights=None, **kwargs):
        """Configures the optimizers and loss weights.

        Args:
          g_optimizer: optimizer of the generator (stage 1: of F only).
          d_optimizer: optimizer of the discriminator (required for stage 2).
          loss_weights: dict loss name -> weight; names from STAGE1_LOSSES /
            STAGE2_LOSSES. Missing names get weight 0 (the loss is not computed).
          **kwargs: passed to ``keras.Model.compile`` (e.g. ``jit_compile``,
            ``steps_per_execution``, ``run_eagerly``).

        Raises:
          ValueError: for an unknown loss name, or stage 2 without ``d_optimizer``.
        """
        known = STAGE1_LOSSES if self.stage == 1 else STAGE2_LOSSES
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(known))
        if unknown:
            raise ValueError(
                f"unknown loss_weights {unknown} for stage {self.stage}; expected {known}"
            )
        if self.stage == 2 and d_optimizer is None:
            raise ValueError("stage 2 needs a d_optimizer")
        kwargs.setdefault("auto_scale_loss", False)
        super().compile(optimizer=g_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.loss_weights = {k: float(v) for k, v in loss_weights.items() if float(v) != 0.0}

    def call(self, inputs, training=False):
        return self.generator({k: inputs[k] for k in INPUT_KEYS}, training=training)

    def build(self, input_shape=None):
        # Sub-models are built by their owners (called once on a batch); see build_all.
        self.built = True

    def build_all(self, image_shape, num_keypoints=18):
        """Builds every sub-model and optimizer with a dummy batch.

        Args:
          image_shape: (height, width) of the training images.
          num_keypoints: pose channels.
        """
        height, width = image_shape
        image = tf.zeros([1, height, width, 3])
        pose = tf.zeros([1, height, width, num_keypoints])
        self.generator({"source_image": image, "source_pose": pose, "target_pose": pose})
        if self.vgg_extractor is not None:
            self.vgg_extractor(image)
        if self.discriminator is not None:
            self.discriminator(image)
        self.built = True
        self.build_optimizers()

    def build_optimizers(self):
        if self.g_optimizer is not None and not self.g_optimizer.built:
            self.g_optimizer.build(self._g_variables())
        if self.d_optimizer is not None and not self.d_optimizer.built:
            self.d_optimizer.build(self.discriminator.trainable_variables)

    def _g_variables(self):
        if self.stage == 1:
            return self.generator.flow_estimator.trainable_variables
        return self.generator.trainable_variables

    # ----------------------------------------------------------------------------------
    # Losses.

    def _average(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

    def _weight(self, name):
        return self.loss_weights.get(name, 0.0)

    def _flow_losses(self, data, flows, source_features, target_features):
        """Correctness, regularisation and (optional) supervised flow losses, averaged."""
        terms = {}
        if self._weight("correctness"):
            per_example = 0.0
            for flow, layer in zip(flows, self.flow_layers):
                per_example += losses.sampling_correctness_loss(
                    source_features[layer],
                    target_features[layer],
                    flow,
                    chunk_size=self.correctness_chunk,
                )
            terms["correctness"] = self._average(per_example)
        if self._weight("regularization"):
            per_example = 0.0
            for flow, k in zip(flows, self.kernel_sizes):
                per_example += losses.affine_regularization_loss(flow, k)
            terms["regularization"] = self._average(per_example)
        if self._weight("flow_supervision"):
            terms["flow_supervision"] = self._average(self._flow_supervision(data, flows))
        if self._weight("warp_correctness"):
            # Pixel-space sampling correctness (synthetic data: needs ground-truth flow).
            self._require_ground_truth(data, "warp_correctness")
            per_example = 0.0
            for flow, scale in zip(flows, self.attention_scales):
                per_example += pixel_losses.warp_correctness_loss(
                    data["source_image"],
                    data["target_image"],
                    flow,
                    data["flow"],
                    data["visibility"],
                    scale,
                )
            terms["warp_correctness"] = self._average(per_example)
        return terms

    @staticmethod
    def _require_ground_truth(data, loss_name):
        if "flow" not in data or "visibility" not in data:
            raise ValueError(
                f"loss weight {loss_name} needs 'flow' and 'visibility' in the batch (only "
                "the synthetic dataset has ground-truth flow); set it to 0 for other data"
            )

    def _flow_supervision(self, data, flows):
        """Masked end-point error against ground-truth flow (synthetic data only)."""
        from gfla_tf.data import resize_flow

        self._require_ground_truth(data, "flow_supervision")
        per_example = 0.0
        for flow, scale in zip(flows, self.attention_scales):
            gt, visible = resize_flow(data["flow"], data["visibility"], scale)
            error = tf.norm(tf.cast(flow, tf.float32) - gt + 1e-12, axis=-1, keepdims=True)
            visible = tf.cast(visible, tf.float32)
            per_example += tf.reduce_sum(error * visible, axis=[1, 2, 3]) / (
                tf.reduce_sum(visible, axis=[1, 2, 3]) + 1.0
            )
        return per_example

    def _mask_losses(self, data, masks):
        """The occlusion masks' visibility term (synthetic data: needs ground truth)."""
        if not self._weight("mask_visibility"):
            return {}
        self._require_ground_truth(data, "mask_visibility")
        per_example = 0.0
        for mask, scale in zip(masks, self.attention_scales):
            per_example += pixel_losses.mask_visibility_loss(mask, data["visibility"], scale)
        return {"mask_visibility": self._average(per_example)}

    def _weighted_total(self, terms):
        total = 0.0
        for name, value in terms.items():
            total += self._weight(name) * value
        return total

    def _uses_vgg(self):
        return any(self._weight(name) for name in VGG_LOSSES)

    def _vgg(self, images):
        # The features are only computed when a weighted loss reads them.
        if not self._uses_vgg():
            return None
        if self.vgg_extractor is None:
            used = sorted(name for name in self.loss_weights if name in VGG_LOSSES)
            raise ValueError(
                f"loss weights {used} need VGG features, but the trainer was built with "
                "vgg_extractor=None"
            )
        return self.vgg_extractor(images, training=False)

    # ----------------------------------------------------------------------------------
    # Steps.

    def _inputs(self, data):
        missing = [k for k in INPUT_KEYS + ("target_image",) if k not in data]
        if missing:
            raise ValueError(f"training batch is missing {missing}; got keys {sorted(data)}")
        return {k: data[k] for k in INPUT_KEYS}

    def train_step(self, data):
        if self.stage == 1:
            return self._stage1_step(data, train=True)
        return self._stage2_step(data, train=True)

    def test_step(self, data):
        if self.stage == 1:
            return self._stage1_step(data, train=False)
        return self._stage2_step(data, train=False)

    def _stage1_step(self, data, train):
        inputs = self._inputs(data)
        source_features = self._vgg(data["source_image"])
        target_features = self._vgg(data["target_image"])
        variables = self.generator.flow_estimator.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.generator.flow_estimator(inputs, training=train)
            terms = self._flow_losses(data, outputs["flows"], source_features, target_features)
            terms.update(self._mask_losses(data, outputs["masks"]))
            total = self._weighted_total(terms)
            scaled = self.g_optimizer.scale_loss(total) if train else total
        if train:
            grads = tape.gradient(scaled, variables)
            self.g_optimizer.apply_gradients(_with_gradients(grads, variables))
        logs = dict(terms)
        logs["g_loss"] = total
        return compat.sync_replicas(logs)

    def _stage2_step(self, data, train):
        inputs = self._inputs(data)
        target_image = data["target_image"]
        source_features = self._vgg(data["source_image"])
        target_features = self._vgg(target_image)
        g_variables = self.generator.trainable_variables
        d_variables = self.discriminator.trainable_variables
        with tf.GradientTape() as g_tape:
            outputs = self.generator(inputs, training=train)
            fake = outputs["image"]
            # Discriminator step first, on the same generated batch (as the reference does);
            # none without an adversarial term, whose only reader the discriminator is.
            d_loss = None
            if self._weight("adversarial"):
                with g_tape.stop_recording():
                    with tf.GradientTape() as d_tape:
                        real_logits = self.discriminator(target_image, training=train)
                        fake_logits = self.discriminator(tf.stop_gradient(fake), training=train)
                        d_loss = self._average(
                            losses.lsgan_discriminator_loss(real_logits, fake_logits)
                        )
                        d_scaled = self.d_optimizer.scale_loss(d_loss) if train else d_loss
                    if train:
                        d_grads = d_tape.gradient(d_scaled, d_variables)
                        self.d_optimizer.apply_gradients(_with_gradients(d_grads, d_variables))

            terms = self._flow_losses(data, outputs["flows"], source_features, target_features)
            terms.update(self._mask_losses(data, outputs["masks"]))
            if self._weight("l1"):
                terms["l1"] = self._average(losses.l1_loss(fake, target_image))
            if self._weight("person_l1"):
                self._require_ground_truth(data, "person_l1")
                terms["person_l1"] = self._average(
                    pixel_losses.person_l1_loss(fake, target_image, data["flow"])
                )
            if self._weight("content") or self._weight("style"):
                fake_features = self._vgg(fake)
                if self._weight("content"):
                    terms["content"] = self._average(
                        losses.content_loss(fake_features, target_features)
                    )
                if self._weight("style"):
                    terms["style"] = self._average(
                        losses.style_loss(fake_features, target_features)
                    )
            if self._weight("adversarial"):
                terms["adversarial"] = self._average(
                    losses.lsgan_generator_loss(self.discriminator(fake, training=train))
                )
            total = self._weighted_total(terms)
            scaled = self.g_optimizer.scale_loss(total) if train else total
        if train:
            grads = g_tape.gradient(scaled, g_variables)
            self.g_optimizer.apply_gradients(_with_gradients(grads, g_variables))
        logs = dict(terms)
        logs["g_loss"] = total
        if d_loss is not None:
            logs["d_loss"] = d_loss
        return compat.sync_replicas(logs)

    def get_config(self):
        # The trainer wraps live sub-models; it is checkpointed with save_weights, and the
        # generator alone is what gets saved as a .keras model.
        config = super().get_config()
        config.update(
            {
                "stage": self.stage,
                "global_batch_size": self.global_batch_size,
                "correctness_chunk": self.correctness_chunk,
            }
        )
        return config
