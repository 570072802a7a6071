"""Input validation of the local-attention op family, shared by every implementation.

``gfla_tf.ops.block_extract`` / ``local_attention`` (before they dispatch to the
``reference`` or ``_custom`` entry points) and the ``LocalAttention`` layer check their
arguments here, so a bad argument gets the same exception and the same message
whichever implementation runs. One rule decides the exception type:

* ``ValueError``: the problem shows without running anything: ``impl``, ``kernel_size``,
  dtypes, and every shape the static shapes decide. In eager mode all shapes are static,
  so eager calls only ever raise ``ValueError``; in a ``tf.function`` this is raised while
  tracing.
* ``tf.errors.InvalidArgumentError``: the problem only shows at run time because the
  static shapes leave a dimension unknown (``tf.function`` with ``None`` dimensions). The
  graph then carries ``tf.debugging.Assert`` checks in front of the op, the same for both
  implementations, whose messages start with the static messages' wording.

The compiled kernels (OP_REQUIRES) and the op shape functions keep their own checks as the
last line of defence, with the same wording. An output whose element count does not fit
int64 (``block_extract`` with a huge ``kernel_size``) is a ``ValueError`` when the shapes
are static; with unknown dimensions only the compiled kernel sees it (InvalidArgumentError).
"""

from collections.abc import Sequence

import tensorflow as tf

IMPLS = ("auto", "custom", "reference")
# kernel_size is an int32 attribute of the compiled ops, and k*k then fits int64.
MAX_KERNEL_SIZE = 2**31 - 1
_INT64_MAX = 2**63 - 1
SOURCE_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
ShapeLike = tf.TensorShape | Sequence[int | None]

_SOURCE_RANK = "source must have rank 4 [batch, height, width, channels]"
_FLOW_RANK = "flow must have rank 4 [batch, height, width, 2]"
_FLOW_CHANNELS = "flow must have 2 channels (x, y) in its last dimension"
_EMPTY_SOURCE = "source must have height and width >= 1 when flow has positions to sample"


def check_impl(impl: str) -> str:
    """Returns ``impl`` if it is one of ``IMPLS``.

    Args:
      impl: the requested implementation.

    Returns:
      ``impl``.

    Raises:
      ValueError: otherwise.
    """
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def check_kernel_size(kernel_size: int) -> int:
    """Returns ``kernel_size`` if it is an integer in [1, MAX_KERNEL_SIZE].

    Args:
      kernel_size: k, the side of the sampled block.

    Returns:
      ``kernel_size``.

    Raises:
      ValueError: otherwise (booleans and floats included).
    """
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    if kernel_size > MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size must be at most {MAX_KERNEL_SIZE}, got {kernel_size}")
    return kernel_size


def _fmt(shape: tf.TensorShape) -> str:
    return str(shape.as_list()) if shape.rank is not None else "<unknown>"


def check_element_count(what: str, dims: Sequence[int]) -> None:
    """Refuses a shape TensorFlow cannot represent (its element count overflows int64).

    Args:
      what: names the tensor in the message, e.g. "block_extract output".
      dims: the sizes, all known.

    Raises:
      ValueError: if a running product of ``dims`` (TensorShape's rule) exceeds 2**63 - 1.
    """
    elements = 1
    for size in dims:
        elements *= size
        if elements > _INT64_MAX:
            raise ValueError(f"{what} shape {list(dims)} has more than 2**63 - 1 elements")


def check_shapes(
    source_shape: ShapeLike,
    flow_shape: ShapeLike,
    kernel_size: int,
    attention_shape: ShapeLike | None = None,
    op: str = "block_extract",
) -> None:
    """Checks what the static shapes decide; unknown dimensions pass.

    Args:
      source_shape: shape of source, [B, Hs, Ws, C] (anything ``tf.TensorShape`` takes).
      flow_shape: shape of flow, [B, H, W, 2].
      kernel_size: k, already checked by ``check_kernel_size``.
      attention_shape: shape of attention, [B, H, W, k*k], for ``local_attention``.
      op: "block_extract" or "local_attention", the op whose output is checked.

    Raises:
      ValueError: naming the first problem found.
    """
    s, f = tf.TensorShape(source_shape), tf.TensorShape(flow_shape)
    kk = kernel_size * kernel_size
    if s.rank is not None and s.rank != 4:
        raise ValueError(f"{_SOURCE_RANK}, got shape {_fmt(s)}")
    if f.rank is not None and f.rank != 4:
        raise ValueError(f"{_FLOW_RANK}, got shape {_fmt(f)}")
    if f.rank == 4 and f[3] is not None and f[3] != 2:
        raise ValueError(f"{_FLOW_CHANNELS}, got shape {_fmt(f)}")
    if s.rank == 4 and f.rank == 4 and None not in (s[0], f[0]) and s[0] != f[0]:
        raise ValueError(f"batch mismatch: source has batch {s[0]} but flow has batch {f[0]}")
    if attention_shape is not None:
        a = tf.TensorShape(attention_shape)
        if a.rank is not None and a.rank != 4:
            raise ValueError(
                f"attention must have rank 4 [batch, height, width, {kk}], got shape {_fmt(a)}"
            )
        if a.rank == 4 and a[3] is not None and a[3] != kk:
            raise ValueError(
                f"attention must have kernel_size**2 = {kk} channels, got shape {_fmt(a)}"
            )
        if a.rank == 4 and f.rank == 4:
            for axis, name in ((0, "batch"), (1, "height"), (2, "width")):
                if None not in (a[axis], f[axis]) and a[axis] != f[axis]:
                    raise ValueError(
                        f"{name} mismatch: attention has shape {_fmt(a)} "
                        f"but flow has shape {_fmt(f)}"
                    )
    if s.rank != 4 or f.rank != 4:
        return
    positions = f[:3].as_list()
    if (s[1] == 0 or s[2] == 0) and None not in positions and 0 not in positions:
        raise ValueError(f"{_EMPTY_SOURCE}, got shape {_fmt(s)}")
    out = positions + ([kk] if op == "block_extract" else []) + [s[3]]
    if None not in out:
        check_element_count(f"{op} output", out)


def _runtime_checks(source, flow, kernel_size, attention):
    """Asserts on what the static shapes left open; returns the list of Assert ops."""
    s, f = source.shape, flow.shape
    a = attention.shape if attention is not None else None
    kk = kernel_size * kernel_size

    def padded(x):
        shape = tf.shape(x, out_type=tf.int64)
        # Padded to rank 4 with -1 so that indexing is safe before the rank is known good.
        return shape, tf.concat([shape, tf.fill([4], tf.constant(-1, tf.int64))], 0)[:4]

    checks = []  # (condition, message, data)
    s_shape, ps = padded(source)
    f_shape, pf = padded(flow)
    if s.rank is None:
        checks.append((tf.equal(tf.size(s_shape), 4), f"{_SOURCE_RANK}, got shape", [s_shape]))
    if f.rank is None:
        checks.append((tf.equal(tf.size(f_shape), 4), f"{_FLOW_RANK}, got shape", [f_shape]))
    if f.rank is None or f[3] is None:
        checks.append((tf.equal(pf[3], 2), f"{_FLOW_CHANNELS}, got shape", [f_shape]))
    if s.rank is None or f.rank is None or s[0] is None or f[0] is None:
        checks.append(
            (
                tf.equal(ps[0], pf[0]),
                "batch mismatch: source has batch",
                [ps[0], "but flow has batch", pf[0]],
            )
        )
    if attention is not None:
        a_shape, pa = padded(attention)
        if a.rank is None:
            checks.append(
                (
                    tf.equal(tf.size(a_shape), 4),
                    f"attention must have rank 4 [batch, height, width, {kk}], got shape",
                    [a_shape],
                )
            )
        if a.rank is None or a[3] is None:
            checks.append(
                (
                    tf.equal(pa[3], kk),
                    f"attention must have kernel_size**2 = {kk} channels, got shape",
                    [a_shape],
                )
            )
        for axis, name in ((0, "batch"), (1, "height"), (2, "width")):
            if a.rank is None or f.rank is None or a[axis] is None or f[axis] is None:
                checks.append(
                    (
                        tf.equal(pa[axis], pf[axis]),
                        f"{name} mismatch: attention has shape",
                        [a_shape, "but flow has shape", f_shape],
                    )
                )
    source_hw_known = s.rank == 4 and s[1] is not None and s[2] is not None
    if not (source_hw_known and s[1] > 0 and s[2] > 0):
        # Statically empty sources with unknown positions also end up here.
        checks.append(
            (
                tf.logical_or(
                    tf.reduce_any(tf.equal(pf[:3], 0)),
                    tf.logical_and(ps[1] >= 1, ps[2] >= 1),
                ),
                f"{_EMPTY_SOURCE}, got shape",
                [s_shape],
            )
        )
    asserts = []
    for condition, message, data in checks:
        # Chained so that the first failing check in this order is the one reported.
        with tf.control_dependencies(asserts[-1:]):
            asserts.append(tf.debugging.Assert(condition, [message, *data], summarize=8))
    return asserts


def validate(
    source: tf.types.experimental.TensorLike,
    flow: tf.types.experimental.TensorLike,
    kernel_size: int,
    attention: tf.types.experimental.TensorLike | None = None,
    op: str = "block_extract",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """Converts and checks the arguments of ``block_extract`` / ``local_attention``.

    Args:
      source: [B, Hs, Ws, C] float16, bfloat16, float32 or float64 tensor-like.
      flow: [B, H, W, 2] floating-point tensor-like.
      kernel_size: k, an integer in [1, MAX_KERNEL_SIZE].
      attention: [B, H, W, k*k] floating-point tensor-like (``local_attention``), or None.
      op: "block_extract" or "local_attention".

    Returns:
      (source, flow, attention) as tensors (dtypes unchanged; attention None if not
      given). In a graph where the static shapes leave a check open, the tensors carry
      control dependencies on the run-time assertions.

    Raises:
      ValueError: a problem the static shapes or dtypes show (see the module docstring).
    """
    check_kernel_size(kernel_size)
    source = tf.convert_to_tensor(source)
    flow = tf.convert_to_tensor(flow)
    if attention is not None:
        attention = tf.convert_to_tensor(attention)
    if source.dtype not in SOURCE_DTYPES:
        raise ValueError(
            "source must be a float16, bfloat16, float32 or float64 tensor, "
            f"got {source.dtype.name}"
        )
    if not flow.dtype.is_floating:
        raise ValueError(f"flow must be a floating-point tensor, got {flow.dtype.name}")
    if attention is not None and not attention.dtype.is_floating:
        raise ValueError(f"attention must be a floating-point tensor, got {attention.dtype.name}")
    check_shapes(
        source.shape,
        flow.shape,
        kernel_size,
        None if attention is None else attention.shape,
        op=op,
    )
    if tf.executing_eagerly():
        return source, flow, attention
    asserts = _runtime_checks(source, flow, kernel_size, attention)
    if asserts:
        with tf.control_dependencies(asserts[-1:]):
            source = tf.identity(source)
            flow = tf.identity(flow)
            if attention is not None:
                attention = tf.identity(attention)
    return source, flow, attention
