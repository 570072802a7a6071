"""The evaluation report: ``metrics.json`` and an HTML page of the best and worst pairs.

Each shown pair is one PNG strip beside ``report.html``: source, target pose skeleton,
generated, target, the finest flow as colour (``gfla_tf.data.visualize.flow_to_color``,
its legend shown once on the page), and its mask. Every file is written atomically
(``gfla_tf.io``), so a crashed run never leaves a half-written report.
"""

import html
import io
import json
import math

import numpy as np
from PIL import Image

from gfla_tf import io as gfla_io
from gfla_tf.data.visualize import draw_skeleton, flow_legend, flow_to_color

STRIP_COLUMNS = ("source", "target pose", "generated", "target", "flow", "mask")
LEGEND_FILE = "flow_legend.png"


def write_json(path, value):
    """Writes ``value`` as indented JSON atomically (NaN/inf become null)."""
    gfla_io.atomic_write_text(path, json.dumps(_json_safe(value), indent=2) + "\n")
    return path


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
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    gfla_io.atomic_write_bytes(path, buffer.getvalue())
    return path


def write_flow_legend(path, size=96):
    """Writes the colour wheel of the flow panels (``flow_legend``) as PNG."""
    return write_png(path, flow_legend(size))


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
    points = np.asarray(target_keypoints, np.float64)
    # Missing keypoints are negative; keep them negative after scaling.
    points = np.where(points >= 0, points * zoom, -1.0)
    pose = np.asarray(draw_skeleton(points, size=(out_h, out_w)), np.uint8)
    panels = [_resize_nearest(source, out_h, out_w), pose]
    panels += [_resize_nearest(generated, out_h, out_w), _resize_nearest(target, out_h, out_w)]
    if flow is None:
        panels.append(np.zeros((out_h, out_w, 3), np.uint8))
    else:
        # A broken model can emit NaN; show it as no motion rather than fail the report.
        flow = np.nan_to_num(np.asarray(flow, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        colours = np.asarray(flow_to_color(flow), np.uint8)
        panels.append(_resize_nearest(colours, out_h, out_w))
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


def write_html(path, metrics, protocol, sections, title="gfla-tf evaluation", legend=None):
    """Writes ``report.html``.

    Args:
      path: the HTML file.
      metrics: nested dict of the metric values.
      protocol: dict of the protocol fields.
      sections: list of (heading, rows) where each row is a dict with "image" (a PNG
        path relative to the page), "label" and "values" (dict of per-pair metrics).
      title: the page title.
      legend: optional path (relative to the page) of the flow colour legend PNG.

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
    if legend:
        parts.append(
            "<p>Flow colours: hue = direction, saturation = magnitude, white = no motion "
            f'<img src="{html.escape(legend)}" alt="flow colour legend"></p>'
        )
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
    gfla_io.atomic_write_text(path, "\n".join(parts) + "\n")
    return path
