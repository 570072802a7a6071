"""NumPy reference of the local-attention ops, forward and backward (no TensorFlow).

Used by ``gpu_check.py`` to check the CUDA kernels of ``local_attention_cuda.cuh`` and by
``tests/test_ops.py`` (which checks this file against the TensorFlow ops on the CPU).
Computations run in float64 whatever the input dtype.
"""

import numpy as np


def _axis_taps(base, offset, size):
    """Clipped coordinate -> (lo, hi, frac) with border-clamped integer taps."""
    c = np.clip(base + offset, -1.0, float(size))
    with np.errstate(invalid="ignore"):
        f = np.floor(c)
        i0 = np.where(np.isnan(f), 0, f).astype(np.int64)
    return np.clip(i0, 0, size - 1), np.clip(i0 + 1, 0, size - 1), c - f


def _taps(source, flow, kernel_size):
    """Yields (n, b_index, (ylo, yhi, wy), (xlo, xhi, wx)) for every tap n."""
    batch, height, width, _ = flow.shape
    src_h, src_w = source.shape[1:3]
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    base_y = ys[None] + flow[..., 1]
    base_x = xs[None] + flow[..., 0]
    bidx = np.broadcast_to(np.arange(batch)[:, None, None], base_y.shape)
    half = kernel_size // 2
    for i in range(kernel_size):
        ty = _axis_taps(base_y, i - half, src_h)
        for j in range(kernel_size):
            yield i * kernel_size + j, bidx, ty, _axis_taps(base_x, j - half, src_w)


def _sample(source, bidx, ty, tx):
    ylo, yhi, wy = ty
    xlo, xhi, wx = tx
    wy, wx = wy[..., None], wx[..., None]
    top = source[bidx, ylo, xlo] * (1 - wx) + source[bidx, ylo, xhi] * wx
    bottom = source[bidx, yhi, xlo] * (1 - wx) + source[bidx, yhi, xhi] * wx
    return top * (1 - wy) + bottom * wy


def block_extract(source, flow, kernel_size):
    """[B, H, W, k*k, C] block of bilinear samples (see gfla_tf/ops/reference.py)."""
    source = np.asarray(source, np.float64)
    flow = np.asarray(flow, np.float64)
    out = np.zeros(flow.shape[:3] + (kernel_size * kernel_size, source.shape[3]))
    for n, bidx, ty, tx in _taps(source, flow, kernel_size):
        out[..., n, :] = _sample(source, bidx, ty, tx)
    return out


def local_attention(source, flow, attention, kernel_size):
    """[B, H, W, C] = sum_n attention[..., n] * block[..., n, :] / k**2."""
    block = block_extract(source, flow, kernel_size)
    attention = np.asarray(attention, np.float64)
    return np.einsum("bhwnc,bhwn->bhwc", block, attention) / float(kernel_size**2)


def _tap_backward(source, grad_tap, bidx, ty, tx, grad_source):
    """Scatters grad_tap [B,H,W,C] into grad_source; returns d<g,v>/dx, d<g,v>/dy."""
    ylo, yhi, wy = ty
    xlo, xhi, wx = tx
    corners = ((ylo, xlo), (ylo, xhi), (yhi, xlo), (yhi, xhi))
    weights = ((1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx)
    dots = []
    for (yy, xx), w in zip(corners, weights):
        np.add.at(grad_source, (bidx, yy, xx), grad_tap * w[..., None])
        dots.append(np.sum(grad_tap * source[bidx, yy, xx], axis=-1))
    d00, d01, d10, d11 = dots
    dx = (1 - wy) * (d01 - d00) + wy * (d11 - d10)
    dy = (1 - wx) * (d10 - d00) + wx * (d11 - d01)
    return dx, dy


def block_extract_backward(grad, source, flow, kernel_size):
    """Gradients (source, flow) of sum(grad * block_extract(source, flow))."""
    source = np.asarray(source, np.float64)
    flow = np.asarray(flow, np.float64)
    grad = np.asarray(grad, np.float64)
    grad_source = np.zeros_like(source)
    grad_flow = np.zeros_like(flow)
    for n, bidx, ty, tx in _taps(source, flow, kernel_size):
        dx, dy = _tap_backward(source, grad[..., n, :], bidx, ty, tx, grad_source)
        grad_flow[..., 0] += dx
        grad_flow[..., 1] += dy
    return grad_source, grad_flow


def local_attention_backward(grad, source, flow, attention, kernel_size):
    """Gradients (source, flow, attention) of sum(grad * local_attention(...))."""
    source = np.asarray(source, np.float64)
    flow = np.asarray(flow, np.float64)
    attention = np.asarray(attention, np.float64)
    grad = np.asarray(grad, np.float64)
    inv = 1.0 / float(kernel_size**2)
    grad_source = np.zeros_like(source)
    grad_flow = np.zeros_like(flow)
    grad_attention = np.zeros_like(attention)
    for n, bidx, ty, tx in _taps(source, flow, kernel_size):
        a = attention[..., n] * inv
        grad_attention[..., n] = np.sum(grad * _sample(source, bidx, ty, tx), axis=-1) * inv
        dx, dy = _tap_backward(source, grad * a[..., None], bidx, ty, tx, grad_source)
        grad_flow[..., 0] += dx
        grad_flow[..., 1] += dy
    return grad_source, grad_flow, grad_attention
