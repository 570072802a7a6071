"""Pictures for people: flow as colour, skeletons, and dataset contact sheets (numpy/PIL)."""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw

from gfla_tf import io
from gfla_tf.data import dataset, synthetic
from gfla_tf.data import flow as flow_lib
from gfla_tf.data import keypoints as kp

# Limb colours by body side: warm for the right side, cool for the left, green centre.
_SIDE_COLOURS = {
    "R": ((255, 60, 40), (255, 140, 0), (255, 200, 0)),
    "L": ((40, 120, 255), (0, 200, 255), (120, 80, 255)),
    "C": ((60, 220, 60), (180, 255, 80), (0, 160, 120)),
}


def flow_to_color(flow: ArrayLike, max_flow: float | None = None) -> np.ndarray:
    """Colours a flow field: hue = direction, saturation = magnitude, zero = white.

    Args:
      flow: [..., H, W, 2] array or tensor (x, y) in pixels: a backward flow, so a
        pixel's colour says where in the source it comes from (hue 0 = red = from the
        right, +x; the hue turns towards +y, down).
      max_flow: magnitude shown at full saturation; default the largest magnitude in
        ``flow`` (so each call is normalised on its own; pass a value to compare images).

    Returns:
      A uint8 array [..., H, W, 3].

    Raises:
      ValueError: if the last axis is not 2.
    """
    flow = np.asarray(flow, np.float64)
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [..., H, W, 2], got {list(flow.shape)}")
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    if max_flow is None:
        max_flow = float(magnitude.max(initial=0.0))
    max_flow = max(float(max_flow), 1e-6)
    hue = (np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0
    saturation = np.clip(magnitude / max_flow, 0.0, 1.0)
    # HSV -> RGB with value 1, vectorised.
    h6 = hue * 6.0
    sector = np.floor(h6).astype(np.int64) % 6
    frac = h6 - np.floor(h6)
    p = 1.0 - saturation
    q = 1.0 - saturation * frac
    t = 1.0 - saturation * (1.0 - frac)
    one = np.ones_like(p)
    r = np.choose(sector, [one, q, p, p, t, one])
    g = np.choose(sector, [t, one, one, q, p, p])
    b = np.choose(sector, [p, p, t, one, one, q])
    return np.rint(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def flow_legend(size: int = 64) -> np.ndarray:
    """The colour wheel that explains :func:`flow_to_color`: a flow pointing from the
    centre to each pixel, full saturation on the rim (x to the right, y down, in pixels).

    Args:
      size: side of the square legend in pixels.

    Returns:
      A uint8 array [size, size, 3].
    """
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(coords, coords)
    return flow_to_color(np.stack([xx, yy], axis=-1), max_flow=(size - 1) / 2.0)


def limb_colour(limb_index: int, limb: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """The RGB colour of a limb of ``keypoints.LIMBS``, by the body side it is on."""
    a, b = limb if limb is not None else kp.LIMBS[limb_index]
    sides = {kp.SIDES[a], kp.SIDES[b]} - {"C"}
    side = sides.pop() if len(sides) == 1 else "C"
    palette = _SIDE_COLOURS[side]
    return palette[limb_index % len(palette)]


def draw_skeleton(
    keypoints: ArrayLike,
    image: ArrayLike | None = None,
    size: tuple[int, int] | None = None,
    line_width: int | None = None,
    radius: float | None = None,
) -> np.ndarray:
    """Draws the 18-keypoint skeleton, limbs coloured by body side.

    Args:
      keypoints: [18, 2] (x, y) pixels; negative = missing (not drawn).
      image: optional uint8 [H, W, 3] to draw on (a copy is made); default black.
      size: (height, width) of the black canvas when ``image`` is None.
      line_width: limb width in pixels (default from the image size).
      radius: joint radius in pixels (default from the image size).

    Returns:
      A uint8 array [H, W, 3].

    Raises:
      ValueError: if neither ``image`` nor ``size`` is given or keypoints are not [18, 2].
    """
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.shape != (kp.NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape [18, 2], got {list(keypoints.shape)}")
    if image is None:
        if size is None:
            raise ValueError("pass an image to draw on or a (height, width) size")
        image = np.zeros((int(size[0]), int(size[1]), 3), np.uint8)
    canvas = Image.fromarray(np.asarray(image, np.uint8).copy())
    scale = max(canvas.size) / 256.0
    line_width = line_width or max(1, round(4 * scale))
    radius = radius if radius is not None else max(1.0, 3 * scale)
    draw = ImageDraw.Draw(canvas)
    present = np.all(keypoints >= 0, axis=1)
    for i, (a, b) in enumerate(kp.LIMBS):
        if present[a] and present[b]:
            draw.line(
                [tuple(keypoints[a]), tuple(keypoints[b])], fill=limb_colour(i), width=line_width
            )
    for i in np.flatnonzero(present):
        x, y = keypoints[i]
        colour = _SIDE_COLOURS[kp.SIDES[i]][0]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(canvas)


def contact_sheet(
    root: str | os.PathLike,
    split: str = "train",
    num_pairs: int = 8,
    kind: str | None = None,
    out_path: str | os.PathLike | None = None,
    scale: int | None = None,
) -> np.ndarray:
    """A picture of a dataset's pairs, one row per pair.

    Columns: source, target, source skeleton, target skeleton and, when the dataset has
    ground truth (synthetic), the flow as colour, the visibility and the source warped by
    the flow (it should reproduce the target where visible).

    Args:
      root: dataset root.
      split: train or test.
      num_pairs: rows (the first pairs of the split).
      kind: dataset kind; default synthetic if a manifest is present, else deepfashion
        (market when its CSVs are found).
      out_path: when given, the sheet is written there as PNG (atomically).
      scale: integer upscaling factor for small images (default: to about 128 px).

    Returns:
      The sheet as a uint8 array [rows * H, columns * W, 3].
    """
    root = os.fspath(root)
    if kind is None:
        if synthetic.read_manifest(root) is not None:
            kind = "synthetic"
        elif dataset.find_split_files(root, "market", split)[0]:
            kind = "market"
        else:
            kind = "deepfashion"
    report = dataset.scan_dataset(root, kind, split)
    if not report.pairs:
        raise ValueError(f"no usable pairs to show in {root} ({split})\n" + report.summary())
    rows = []
    for source, target in report.pairs[:num_pairs]:
        images = [
            np.asarray(Image.open(os.path.join(root, split, n)).convert("RGB"))
            for n in (source, target)
        ]
        height, width = images[1].shape[:2]
        images[0] = np.asarray(Image.fromarray(images[0]).resize((width, height)))
        cells = list(images)
        for name, image in zip((source, target), images):
            frame = dataset.ANNOTATION_SIZES.get(kind, image.shape[:2])
            if kind == "synthetic":
                frame = image.shape[:2]
            points = kp.scale_keypoints(report.keypoints[name], frame, image.shape[:2])
            cells.append(draw_skeleton(points, image=(image // 3).astype(np.uint8)))
        if kind == "synthetic":
            flow, visibility = flow_lib.read_flow(synthetic.flow_path(root, split, source, target))
            cells.append(flow_to_color(flow))
            cells.append(np.repeat((visibility * 255).astype(np.uint8), 3, axis=-1))
            warped = flow_lib.warp_numpy(images[0].astype(np.float64), flow)
            cells.append(np.clip(np.rint(warped), 0, 255).astype(np.uint8))
        rows.append(np.concatenate(cells, axis=1))
    sheet = np.concatenate(rows, axis=0)
    factor = scale or max(1, 128 // max(rows[0].shape[0], 1))
    if factor > 1:
        sheet = np.repeat(np.repeat(sheet, factor, axis=0), factor, axis=1)
    if out_path:
        with io.atomic_path(out_path) as tmp:
            Image.fromarray(sheet).save(tmp, format="PNG")
    return sheet
