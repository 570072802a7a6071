"""The evaluation report: ``metrics.json`` and an HTML page of the best and worst pairs.

Each shown pair is one PNG strip beside ``report.html``: source, target pose skeleton,
generated, target, the finest flow as colour, and its mask. Files are written to a
temporary name and renamed, so a crashed run never leaves a half-written report.
"""

import colorsys
import html
import json
import math
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw

# Skeleton limbs (COCO-18 index pairs); gfla_tf.data.keypoints.LIMBS when available.
_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
STRIP_COLUMNS = ("source", "target pose", "generated", "target", "flow", "mask")


def write_atomic(path, data):
    """Writes ``data`` (str or bytes) to ``path`` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path, value):
    """Writes ``value`` as indented JSON atomically (NaN/inf become null)."""
    return write_atomic(path, json.dumps(_json_safe(value), indent=2) + "\n")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value


def write_png(path, array):
    """Writes a uint8 [H, W, 3] (or [H, W]) array as PNG atomically."""
    buffer = _png_bytes(np.asarray(array, np.uint8))
    return write_atomic(path, buffer)


def _png_bytes(array):
    import io

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def flow_to_color(flow, max_magnitude=None):
    """Colours a flow: hue = direction, saturation = magnitude (white = no motion).

    Uses ``gfla_tf.data.flow_to_color`` when the data package provides it.

    Args:
      flow: [H, W, 2] flow (x, y).
      max_magnitude: magnitude shown fully saturated; default the largest in ``flow``.

    Returns:
      uint8 [H, W, 3].
    """
    try:
        from gfla_tf.data import flow_to_color as data_flow_to_color
    except ImportError:
        data_flow_to_color = None
    if data_flow_to_color is not None:
        return np.asarray(data_flow_to_color(flow), np.uint8)
    flow = np.asarray(flow, np.float64)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    scale = max_magnitude or max(float(magnitude.max()), 1e-6)
    hue = (np.arctan2(-flow[..., 1], -flow[..., 0]) / (2 * np.pi)) % 1.0
    saturation = np.clip(magnitude / scale, 0.0, 1.0)
    hsv = np.stack([hue, saturation, np.ones_like(hue)], axis=-1) * 255.0
    hsv = np.clip(hsv + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"), np.uint8)


def draw_skeleton(keypoints, height, width, line_width=None):
    """Draws an 18-keypoint pose on black (missing = negative coordinates).

    Args:
      keypoints: [18, 2] (x, y) pixels.
      height: canvas height.
      width: canvas width.
      line_width: limb width in pixels; default scales with the canvas.

    Returns:
      uint8 [height, width, 3].
    """
    try:
        from gfla_tf.data.keypoints import LIMBS as limbs
    except ImportError:
        limbs = _LIMBS
    keypoints = np.asarray(keypoints, np.float64)
    canvas = Image.new("RGB", (int(width), int(height)))
    draw = ImageDraw.Draw(canvas)
    line_width = line_width or max(1, int(round(min(height, width) / 64)))

    def present(i):
        return i < len(keypoints) and keypoints[i][0] >= 0 and keypoints[i][1] >= 0

    for n, (a, b) in enumerate(limbs):
        if present(a) and present(b):
            r, g, bl = colorsys.hsv_to_rgb(n / len(limbs), 1.0, 1.0)
            color = (int(r * 255), int(g * 255), int(bl * 255))
            draw.line([tuple(keypoints[a]), tuple(keypoints[b])], fill=color, width=line_width)
    radius = line_width + 0.5
    for i in range(len(keypoints)):
        if present(i):
            x, y = keypoints[i]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 255, 255))
    return np.asarray(canvas, np.uint8)


def _resize_nearest(array, height, width):
    image = Image.fromarray(array)
    return np.asarray(image.resize((width, height), Image.NEAREST), np.uint8)


def pair_strip(source, target_keypoints, generated, target, flow, mask, min_height=128):
    """One row of the report: the six panels side by side, upscaled to ``min_height``.

    Args:
      source: uint8 [H, W, 3].
      target_keypoints: [18, 2] (x, y) pixels at H x W.
      generated: uint8 [H, W, 3].
      target: uint8 [H, W, 3].
      flow: [h, w, 2] flow (any scale) or None.
      mask: [h, w, 1] mask in [0, 1] or None.
      min_height: upscale (nearest) so that panels are at least this tall.

    Returns:
      uint8 [H', 6 W', 3].
    """
    height, width = source.shape[:2]
    zoom = max(1, int(math.ceil(min_height / height)))
    out_h, out_w = height * zoom, width * zoom
    try:
        from gfla_tf.data import draw_skeleton as data_draw_skeleton
    except ImportError:
        data_draw_skeleton = None
    points = np.asarray(target_keypoints, np.float64)
    # Missing keypoints are negative; keep them negative after scaling.
    points = np.where(points >= 0, points * zoom, -1.0)
    if data_draw_skeleton is not None:
        pose = np.asarray(data_draw_skeleton(points, size=(out_h, out_w)), np.uint8)
    else:
        pose = draw_skeleton(points, out_h, out_w)
    panels = [_resize_nearest(source, out_h, out_w), pose]
    panels += [_resize_nearest(generated, out_h, out_w), _resize_nearest(target, out_h, out_w)]
    if flow is None:
        panels.append(np.zeros((out_h, out_w, 3), np.uint8))
    else:
        # A broken model can emit NaN; show it as no motion rather than fail the report.
        flow = np.nan_to_num(np.asarray(flow, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        panels.append(_resize_nearest(flow_to_color(flow), out_h, out_w))
    if mask is None:
        panels.append(np.zeros((out_h, out_w, 3), np.uint8))
    else:
        mask = np.nan_to_num(np.asarray(mask, np.float64)[..., 0], nan=0.0)
        grey = (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8)
        panels.append(_resize_nearest(np.repeat(grey[..., None], 3, -1), out_h, out_w))
    return np.concatenate(panels, axis=1)


def _format_value(value):
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return html.escape(str(value))


def _flatten(prefix, value, rows):
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, rows)
    else:
        rows.append((prefix, value))


def write_html(path, metrics, protocol, sections, title="gfla-tf evaluation"):
    """Writes ``report.html``.

    Args:
      path: the HTML file.
      metrics: nested dict of the metric values.
      protocol: dict of the protocol fields.
      sections: list of (heading, rows) where each row is a dict with "image" (a PNG
        path relative to the page), "label" and "values" (dict of per-pair metrics).
      title: the page title.

    Returns:
      ``path``.
    """
    rows = []
    _flatten("", metrics, rows)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "img{image-rendering:pixelated;max-width:100%}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>",
    ]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{_format_value(v)}</td></tr>" for k, v in rows]
    parts.append("</table><h2>Protocol</h2><table>")
    for key, value in protocol.items():
        if isinstance(value, (list, tuple)):
            value = (
                "; ".join(str(v) for v in value)
                if key == "notes"
                else "x".join(str(v) for v in value)
            )
        parts.append(f"<tr><td>{html.escape(key)}</td><td>{_format_value(value)}</td></tr>")
    parts.append("</table>")
    columns = " | ".join(STRIP_COLUMNS)
    for heading, entries in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>Columns: {html.escape(columns)}</p>")
        for entry in entries:
            values = ", ".join(f"{k} {_format_value(v)}" for k, v in entry["values"].items())
            parts.append(
                f"<p><b>{html.escape(entry['label'])}</b> ({values})<br>"
                f'<img src="{html.escape(entry["image"])}" alt="{html.escape(entry["label"])}">'
                "</p>"
            )
    parts.append("</body></html>")
    return write_atomic(path, "\n".join(parts) + "\n")
