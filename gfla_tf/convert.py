"""Conversion of the authors' PyTorch GFLA checkpoints to the Keras models of gfla-tf.

The published checkpoints are PyTorch state dicts: the generator (F inside under the
prefix ``flow_net.``, the renderer under ``source.`` and ``target.``) and the
discriminator (spectral-normalised convs stored as ``weight_orig``, ``weight_u``,
``weight_v``). ``convert_checkpoint`` works on plain dicts of numpy arrays, so only
``load_state_dict`` needs torch (the optional extra ``gfla-tf[convert]``).

Layouts:

* Conv2d weight (out, in, kh, kw) -> Keras Conv2D kernel (kh, kw, in, out).
* ConvTranspose2d weight (in, out, kh, kw) -> Keras Conv2DTranspose kernel
  (kh, kw, out, in). Both frameworks compute the adjoint of the same cross-correlation,
  so no spatial flip is needed (checked numerically in tests/test_convert.py).
* The kernel prediction network's Conv(k, stride k) over the block layout is a Dense on
  the flattened (i, j, channel) patch: (out, 2C, k, k) -> (k, k, 2C, out) -> (k*k*2C, out);
  its 1x1 conv (k*k, hidden, 1, 1) -> Dense (hidden, k*k).
* InstanceNorm weight/bias -> gamma/beta.
* Spectral norm: weight_orig as a conv weight; weight_u as is; weight_v, a vector over
  (in, kh, kw), is reordered to (kh, kw, in), the row order of the Keras kernel matrix.
* ``Jump`` and ``Output`` register their conv twice (``conv1`` and ``model.2``): both
  keys must hold the same tensor.

Every key must be consumed and every Keras weight assigned; a missing, unexpected,
mis-shaped, non-finite or inconsistent key raises ``ValueError`` naming it before any
weight is set.
"""

from __future__ import annotations

import collections
import logging
import os
import zipfile
import zlib
from typing import TYPE_CHECKING

import numpy as np

from gfla_tf import models

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import ml_collections

_log = logging.getLogger(__name__)

# Entry: a torch key, the Keras variable (the wrapper for "sn_v") and the layout kind.
_Entry = collections.namedtuple("_Entry", "key variable kind")


class _Mapping:
    """Collects torch key -> Keras variable correspondences for one model."""

    def __init__(self):
        self.entries = []
        self.duplicates = {}  # duplicate key -> key it must equal

    def add(self, key, variable, kind):
        self.entries.append(_Entry(key, variable, kind))

    def norm(self, prefix, layer):
        self.add(prefix + ".weight", layer.gamma, "vector")
        self.add(prefix + ".bias", layer.beta, "vector")

    def conv(self, prefix, layer, kind="conv"):
        self.add(prefix + ".weight", layer.kernel, kind)
        self.add(prefix + ".bias", layer.bias, "vector")

    def spectral_conv(self, prefix, wrapper):
        self.add(prefix + ".bias", wrapper.layer.bias, "vector")
        self.add(prefix + ".weight_orig", wrapper.layer.kernel, "conv")
        self.add(prefix + ".weight_u", wrapper.vector_u, "vector")
        self.add(prefix + ".weight_v", wrapper, "sn_v")

    def duplicate(self, key, same_as):
        self.duplicates[key] = same_as


def _encoder_block(m, prefix, block):
    m.norm(prefix + ".model.0", block.norm1)
    m.conv(prefix + ".model.2", block.conv1)
    m.norm(prefix + ".model.3", block.norm2)
    m.conv(prefix + ".model.5", block.conv2)


def _res_block(m, prefix, block):
    m.norm(prefix + ".model.0", block.norm1)
    m.conv(prefix + ".model.2", block.conv1)
    m.norm(prefix + ".model.3", block.norm2)
    m.conv(prefix + ".model.5", block.conv2)


def _res_block_decoder(m, prefix, block):
    m.norm(prefix + ".model.0", block.norm1)
    m.conv(prefix + ".model.2", block.conv1)
    m.norm(prefix + ".model.3", block.norm2)
    m.conv(prefix + ".model.5", block.deconv, kind="deconv")
    m.conv(prefix + ".shortcut.0", block.shortcut, kind="deconv")


def _padded_conv(m, prefix, conv):
    """Jump/Output: one conv registered as ``conv1`` and as ``model.2``."""
    m.conv(prefix + ".conv1", conv)
    for suffix in (".weight", ".bias"):
        m.duplicate(prefix + ".model.2" + suffix, prefix + ".conv1" + suffix)


def generator_mapping(generator: models.GFLAGenerator) -> _Mapping:
    """Returns the torch-key mapping of a built ``GFLAGenerator``."""
    m = _Mapping()
    flow = generator.flow_estimator
    for i, block in enumerate(flow.encoders):
        _encoder_block(m, "flow_net." + ("block0" if i == 0 else f"encoder{i - 1}"), block)
    for i, (dec, jump) in enumerate(zip(flow.decoders, flow.jumps)):
        _res_block_decoder(m, f"flow_net.decoder{i}", dec)
        _padded_conv(m, f"flow_net.jump{i}", jump.conv)
        if i in flow.head_steps:
            head = flow.head_steps.index(i)
            m.conv(f"flow_net.output{i}", flow.flow_heads[head])
            m.conv(f"flow_net.mask{i}.0", flow.mask_heads[head])
    for net, encoders in (
        ("source", generator.source_encoders),
        ("target", generator.target_encoders),
    ):
        for i, block in enumerate(encoders):
            _encoder_block(m, f"{net}." + ("block0" if i == 0 else f"encoder{i - 1}"), block)
    res_blocks = iter(generator.res_blocks)
    n_res = generator.renderer_blocks - 1
    for i, up in enumerate(generator.up_blocks):
        if n_res:
            for j in range(n_res):
                _res_block(m, f"target.decoder{i}.0.model.{j}", next(res_blocks))
            _res_block_decoder(m, f"target.decoder{i}.1", up)
        else:
            _res_block_decoder(m, f"target.decoder{i}.0", up)
        if i in generator.attention_steps:
            attn = generator.attention[generator.attention_steps.index(i)]
            m.add(f"target.attn{i}.fully_connect_layer.0.weight", attn.hidden_dense.kernel, "patch")
            m.add(f"target.attn{i}.fully_connect_layer.0.bias", attn.hidden_dense.bias, "vector")
            m.add(f"target.attn{i}.fully_connect_layer.2.weight", attn.logits_dense.kernel, "patch")
            m.add(f"target.attn{i}.fully_connect_layer.2.bias", attn.logits_dense.bias, "vector")
    _padded_conv(m, "target.outconv", generator.output_block.conv)
    return m


def discriminator_mapping(discriminator: models.Discriminator) -> _Mapping:
    """Returns the torch-key mapping of a built ``Discriminator``."""
    m = _Mapping()
    for i, block in enumerate(discriminator.blocks):
        prefix = "block0" if i == 0 else f"encoder{i - 1}"
        m.spectral_conv(prefix + ".model.1", block.conv1)
        m.spectral_conv(prefix + ".model.3", block.conv2)
        m.spectral_conv(prefix + ".shortcut.1", block.bypass)
    m.spectral_conv("conv", discriminator.conv)
    return m


def _torch_shape(entry):
    """The PyTorch shape of the tensor that fills ``entry``."""
    kind = entry.kind
    if kind == "sn_v":
        kernel = entry.variable.layer.kernel.shape
        return (int(np.prod(kernel[:-1])),)
    shape = tuple(int(s) for s in entry.variable.shape)
    if kind == "vector":
        return shape
    if kind == "conv":  # (kh, kw, in, out) -> (out, in, kh, kw)
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "deconv":  # (kh, kw, out, in) -> (in, out, kh, kw)
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "patch":  # Dense (k*k*C, out) -> conv (out, C, k, k); k from the key's layer
        raise AssertionError("patch shapes are resolved by _expected_shapes")
    raise AssertionError(f"unknown kind {kind}")


def _expected_shapes(mapping, model):
    shapes = {}
    attn_by_prefix = {}
    if isinstance(model, models.GFLAGenerator):
        for step, attn in zip(model.attention_steps, model.attention):
            attn_by_prefix[f"target.attn{step}."] = attn
    for entry in mapping.entries:
        if entry.kind == "patch":
            attn = next(a for p, a in attn_by_prefix.items() if entry.key.startswith(p))
            k = attn.kernel_size
            units_in, units_out = (int(s) for s in entry.variable.shape)
            if ".fully_connect_layer.0." in entry.key:
                shapes[entry.key] = (units_out, units_in // (k * k), k, k)
            else:
                shapes[entry.key] = (units_out, units_in, 1, 1)
        else:
            shapes[entry.key] = _torch_shape(entry)
    for dup, same in mapping.duplicates.items():
        shapes[dup] = shapes[same]
    return shapes


def expected_state_dict_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """The PyTorch state-dict keys and shapes that a built GFLA model corresponds to.

    Args:
      model: a built ``GFLAGenerator`` or ``Discriminator``.

    Returns:
      dict key -> shape tuple, in the model's order.
    """
    mapping = _mapping_for(model)
    return _expected_shapes(mapping, model)


def _mapping_for(model):
    if isinstance(model, models.GFLAGenerator):
        return generator_mapping(model)
    if isinstance(model, models.Discriminator):
        return discriminator_mapping(model)
    raise TypeError(f"expected a GFLAGenerator or Discriminator, got {type(model).__name__}")


def _to_keras(entry, value):
    kind = entry.kind
    if kind == "vector":
        return value
    if kind == "conv":
        return np.transpose(value, (2, 3, 1, 0))
    if kind == "deconv":
        return np.transpose(value, (2, 3, 1, 0))
    if kind == "patch":
        kernel = np.transpose(value, (2, 3, 1, 0))
        return kernel.reshape(-1, kernel.shape[-1])
    if kind == "sn_v":
        kh, kw, cin, _ = entry.variable.layer.kernel.shape
        return np.transpose(value.reshape(cin, kh, kw), (1, 2, 0)).reshape(-1)
    raise AssertionError(f"unknown kind {kind}")


def _strip_prefix(state):
    """Drops a DataParallel ``module.`` prefix when every key carries it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _plan_assignments(model, state, what):
    """Checks ``state`` against ``model``; returns [(variable, keras array)] or raises."""
    mapping = _mapping_for(model)
    expected = _expected_shapes(mapping, model)
    state = _strip_prefix(state)
    missing = [k for k in expected if k not in state]
    extra = sorted(k for k in state if k not in expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if extra:
        problems.append(f"unexpected keys: {extra}")
    for key, shape in expected.items():
        if key in state and tuple(np.shape(state[key])) != tuple(shape):
            problems.append(
                f"key {key!r} has shape {tuple(np.shape(state[key]))}, expected {tuple(shape)}"
            )
    if not problems:
        nonfinite = [k for k in expected if not np.all(np.isfinite(np.asarray(state[k])))]
        if nonfinite:
            shown = ", ".join(repr(k) for k in nonfinite[:5])
            more = f" and {len(nonfinite) - 5} more" if len(nonfinite) > 5 else ""
            problems.append(f"non-finite values (NaN or Inf) in key {shown}{more}")
    if not problems:
        for dup, same in mapping.duplicates.items():
            if not np.array_equal(np.asarray(state[dup]), np.asarray(state[same])):
                problems.append(f"keys {dup!r} and {same!r} must hold the same tensor")
    if problems:
        raise ValueError(f"{what} state dict does not match the model: " + "; ".join(problems))

    plan = []
    for entry in mapping.entries:
        value = np.asarray(state[entry.key], dtype=np.float32)
        variable = entry.variable.vector_v if entry.kind == "sn_v" else entry.variable
        plan.append((variable, _to_keras(entry, value)))
    assigned = {id(v) for v, _ in plan}
    unassigned = [w.path for w in model.weights if id(w) not in assigned]
    if unassigned:
        raise ValueError(f"{what}: Keras weights left without a checkpoint value: {unassigned}")
    if len(assigned) != len(plan):
        raise ValueError(f"{what}: a Keras weight would be assigned twice")
    return plan


def _model_config(config):
    return config.model if hasattr(config, "model") else config


def convert_checkpoint(
    config: ml_collections.ConfigDict,
    generator_state: Mapping[str, np.ndarray],
    discriminator_state: Mapping[str, np.ndarray] | None = None,
    impl: str | None = None,
) -> tuple[models.GFLAGenerator, models.Discriminator | None]:
    """Builds the Keras models of ``config`` and fills them from PyTorch state dicts.

    Args:
      config: an experiment config (``config.model`` is used) or its model section.
      generator_state: dict key -> numpy array of the authors' generator.
      discriminator_state: optional dict of the authors' discriminator.
      impl: local attention op for the generator (default: ``config.model.op_impl``).

    Returns:
      (generator, discriminator); discriminator is None without ``discriminator_state``.

    Raises:
      ValueError: missing, unexpected or mis-shaped keys, non-finite values, or duplicated
        convs that differ; the message names the offending keys and no model is returned.
    """
    model_config = _model_config(config)
    generator = models.build_generator(model_config, impl=impl)
    plans = [_plan_assignments(generator, generator_state, "generator")]
    discriminator = None
    if discriminator_state is not None:
        discriminator = models.build_discriminator(model_config)
        plans.append(_plan_assignments(discriminator, discriminator_state, "discriminator"))
    # Assign only after both state dicts passed every check.
    for plan in plans:
        for variable, value in plan:
            variable.assign(value)
    _log.info(
        "converted generator (%d weights)%s",
        len(plans[0]),
        "" if discriminator is None else f" and discriminator ({len(plans[1])} weights)",
    )
    return generator, discriminator


def export_state_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """Inverse of the conversion: the PyTorch state dict (numpy) of a built model.

    Useful to check a conversion round trip or to hand weights back to the reference code.

    Args:
      model: a built ``GFLAGenerator`` or ``Discriminator``.

    Returns:
      dict key -> numpy array in PyTorch layout.
    """
    mapping = _mapping_for(model)
    shapes = _expected_shapes(mapping, model)
    state = {}
    for entry in mapping.entries:
        if entry.kind == "sn_v":
            kh, kw, cin, _ = entry.variable.layer.kernel.shape
            v = np.asarray(entry.variable.vector_v).reshape(kh, kw, cin)
            state[entry.key] = np.transpose(v, (2, 0, 1)).reshape(-1)
            continue
        value = np.asarray(entry.variable)
        if entry.kind in ("conv", "deconv"):
            value = np.transpose(value, (3, 2, 0, 1))
        elif entry.kind == "patch":
            out, cin, kh, kw = shapes[entry.key]
            value = np.transpose(value.reshape(kh, kw, cin, out), (3, 2, 0, 1))
        state[entry.key] = value
    for dup, same in mapping.duplicates.items():
        state[dup] = state[same]
    return {k: state[k] for k in shapes}


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a state dict as numpy arrays from a ``.pth`` (torch) or ``.npz`` file.

    Args:
      path: a PyTorch checkpoint (needs torch: ``pip install 'gfla-tf[convert]'``) or an
        ``.npz`` archive of key -> array.

    Returns:
      dict key -> numpy array.

    Raises:
      ImportError: a ``.pth`` file and torch is not installed.
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file is truncated or corrupt, or does not hold a state dict.
    """
    path = os.fspath(path)
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as err:
            raise ValueError(f"{path}: not a readable .npz archive (truncated?): {err}") from err
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"reading {path} needs PyTorch: pip install torch (or pip install "
            "'gfla-tf[convert]'), or convert the state dict to .npz elsewhere"
        ) from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, pickle and zip errors alike
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint (truncated?): {message}"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "detach") for v in state.values()):
        raise ValueError(f"{path} does not hold a PyTorch state dict of tensors")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
