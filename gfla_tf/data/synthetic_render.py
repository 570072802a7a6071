"""The synthetic person renderer: body parts on a skeleton, exact flow and visibility.

Every person is a set of body parts (torso, neck, head, upper and lower arms, thighs and
shins) placed on the 18-keypoint skeleton. Each part is a shape in its own local
coordinate frame ``(u, v)``, mapped to the image by an affine frame defined by its
keypoints (a limb by its two joints, the torso by the neck, a shoulder and the hips, the
head by the neck and a tilt). The clothing (solid colours or broad stripes, checks and
dots, shading) is a function of the local coordinates, so a surface point keeps its colour
when the pose changes. Parts are painted back to front (the arms may be in front of or
behind the torso, one leg in front of the other), which gives self-occlusion.

The renderer keeps, for every pixel, the part id and the local coordinates, so the
backward flow of a pair is exact: a target pixel of part p at local (u, v) corresponds to
the source point ``A_source[p] (u, v, 1)``. A target pixel is visible when the source
pixels around that point (all bilinear taps) show the same part. The background is the
same in both images of a pair and has zero flow.

``gfla_tf.data.synthetic`` writes these renders as a dataset.
"""

import functools

import numpy as np

from gfla_tf.data import keypoints as kp

PART_NAMES = (
    "background",
    "torso",
    "neck",
    "head",
    "r_upper_arm",
    "r_lower_arm",
    "l_upper_arm",
    "l_lower_arm",
    "r_thigh",
    "r_shin",
    "l_thigh",
    "l_shin",
)
TORSO, NECK, HEAD = 1, 2, 3
R_UPPER_ARM, R_LOWER_ARM, L_UPPER_ARM, L_LOWER_ARM = 4, 5, 6, 7
R_THIGH, R_SHIN, L_THIGH, L_SHIN = 8, 9, 10, 11
NUM_PARTS = len(PART_NAMES)
ARM_PARTS = (R_UPPER_ARM, R_LOWER_ARM, L_UPPER_ARM, L_LOWER_ARM)
LEG_PARTS = (R_THIGH, R_SHIN, L_THIGH, L_SHIN)

# Keypoint indices (OpenPose COCO-18 order; see gfla_tf.data.keypoints).
NOSE, NECK_KP, RSHO, RELB, RWRI, LSHO, LELB, LWRI = 0, 1, 2, 3, 4, 5, 6, 7
RHIP, RKNE, RANK, LHIP, LKNE, LANK, REYE, LEYE, REAR, LEAR = range(8, 18)


def _direction(angle):
    """Unit vector at ``angle`` radians from straight down, turning towards +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def _right_of(down):
    """The unit normal on the image-right side of a downward axis ((0, 1) -> (1, 0))."""
    return np.array([down[1], -down[0]])


def sample_identity(rng, size):
    """Samples body proportions and clothing for one person.

    Args:
      rng: numpy Generator.
      size: image size in pixels (square).

    Returns:
      A dict of identity parameters (lengths in pixels at ``size``).
    """
    # The person fills most of the frame's height (more pixels to carry appearance).
    h = size * rng.uniform(0.80, 0.88)
    jitter = lambda: rng.uniform(0.92, 1.08)  # noqa: E731
    skin = np.array([0.95, 0.78, 0.65]) * rng.uniform(0.45, 1.0) + rng.uniform(-0.03, 0.03, 3)

    def garment():
        # Half the garments are plain, the rest have broad patterns: at 64x64 a limb is a
        # few pixels wide, and a finer texture is below what a small model can carry from
        # source to target in the quickstart's budget (see benchmarks/RESULTS.md).
        return {
            "c1": rng.uniform(0.05, 0.95, 3),
            "c2": rng.uniform(0.05, 0.95, 3),
            "pattern": int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15])),  # solid, stripes, checks, dots
            "period": rng.uniform(10.0, 16.0),
            "angle": rng.uniform(0, np.pi),
        }

    return {
        "h": h,
        "torso_len": 0.30 * h * jitter(),
        "shoulder_half": 0.105 * h * jitter(),
        "hip_ratio": 0.68 * jitter(),
        "neck_len": 0.045 * h,
        "head_r": 0.072 * h * jitter(),
        "upper_arm": 0.165 * h * jitter(),
        "lower_arm": 0.155 * h * jitter(),
        "thigh": 0.225 * h * jitter(),
        "shin": 0.22 * h * jitter(),
        "w_upper_arm": 0.050 * h * jitter(),
        "w_lower_arm": 0.043 * h * jitter(),
        "w_thigh": 0.066 * h * jitter(),
        "w_shin": 0.054 * h * jitter(),
        "skin": np.clip(skin, 0.05, 1.0),
        "hair": rng.uniform(0.02, 0.5)
        * np.array([1.0, rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.8)]),
        "shirt": garment(),
        "trousers": garment(),
        "shoes": rng.uniform(0.02, 0.35, 3),
        "long_sleeves": bool(rng.random() < 0.5),
    }


def sample_background(rng):
    """Samples a static studio background: a light, slightly tinted wall and a floor.

    Like the DeepFashion photographs, the wall is light and nearly neutral (a soft
    vertical gradient and a faint pattern). The renderer's instance norms discard each
    feature map's absolute level, so a light backdrop is what lets the network recover
    the absolute colour of the clothes; arbitrary saturated backdrops would not.
    """

    def light(low, high):
        return rng.uniform(low, high) + rng.uniform(-0.04, 0.04, 3)

    return {
        "top": light(0.82, 0.97),
        "bottom": light(0.72, 0.9),
        "floor": light(0.55, 0.8),
        "floor_level": rng.uniform(0.78, 0.95),
        "freq": rng.uniform(0.5, 2.5, 2),
        "phase": rng.uniform(0, 2 * np.pi, 2),
        "amp": rng.uniform(0.0, 0.03),
    }


def sample_pose(rng, identity, size):
    """Samples a pose: keypoints, part frames and the painting order.

    Args:
      rng: numpy Generator.
      identity: from ``sample_identity``.
      size: image size in pixels.

    Returns:
      A dict with ``keypoints`` ([18, 2] float, missing = -1), ``frames`` ([P, 2, 3]
      local -> pixel affine per part, index 0 unused) and ``order`` (part ids back to
      front).
    """
    s = rng.uniform(0.92, 1.06)
    ident = {
        k: (v * s if isinstance(v, float) and k not in ("hip_ratio",) else v)
        for k, v in identity.items()
    }
    lean = np.radians(rng.uniform(-12, 12))
    yaw = rng.uniform(0.65, 1.0)
    down = _direction(lean)
    right = _right_of(down)
    above = ident["torso_len"] + ident["neck_len"] + 2 * ident["head_r"]
    below = ident["thigh"] + ident["shin"]
    hip_mid = np.array(
        [
            size * (0.5 + rng.uniform(-0.08, 0.08)),
            size * 0.5 + (above - below) / 2 + size * rng.uniform(-0.04, 0.04),
        ]
    )
    neck = hip_mid - ident["torso_len"] * down
    shoulder_vec = ident["shoulder_half"] * yaw * right
    hip_vec = shoulder_vec * ident["hip_ratio"]
    points = np.full((kp.NUM_KEYPOINTS, 2), -1.0)
    points[NECK_KP] = neck
    # The person faces the camera: their right side is on the image's left.
    points[RSHO], points[LSHO] = neck - shoulder_vec, neck + shoulder_vec
    points[RHIP], points[LHIP] = hip_mid - hip_vec, hip_mid + hip_vec

    frames = np.zeros((NUM_PARTS, 2, 3))
    shapes = {}

    def limb(part, a, b, half_width):
        axis = b - a
        length = np.linalg.norm(axis)
        normal = _right_of(axis / max(length, 1e-6)) * half_width
        frames[part] = np.stack([axis, normal, a], axis=1)
        shapes[part] = length / half_width

    for side, sho, elb, wri, upper, lower in (
        (-1, RSHO, RELB, RWRI, R_UPPER_ARM, R_LOWER_ARM),
        (1, LSHO, LELB, LWRI, L_UPPER_ARM, L_LOWER_ARM),
    ):
        # Negative abduction swings the arm across the body.
        abduction = np.radians(rng.uniform(-45, 165))
        phi = lean + side * abduction
        bend = np.radians(rng.uniform(0, 140)) * rng.choice([-1, 1])
        points[elb] = points[sho] + ident["upper_arm"] * _direction(phi)
        points[wri] = points[elb] + ident["lower_arm"] * _direction(phi + bend)
        limb(upper, points[sho], points[elb], ident["w_upper_arm"])
        limb(lower, points[elb], points[wri], ident["w_lower_arm"])
    for side, hip, kne, ank, thigh, shin in (
        (-1, RHIP, RKNE, RANK, R_THIGH, R_SHIN),
        (1, LHIP, LKNE, LANK, L_THIGH, L_SHIN),
    ):
        phi = side * np.radians(rng.uniform(-12, 35))
        bend = side * np.radians(rng.uniform(-20, 60))
        points[kne] = points[hip] + ident["thigh"] * _direction(phi)
        points[ank] = points[kne] + ident["shin"] * _direction(phi - bend)
        limb(thigh, points[hip], points[kne], ident["w_thigh"])
        limb(shin, points[kne], points[ank], ident["w_shin"])

    tilt = lean + np.radians(rng.uniform(-20, 20))
    head_down = _direction(tilt)
    head_right = _right_of(head_down)
    r = ident["head_r"]
    head_centre = neck - head_down * (ident["neck_len"] + 0.85 * r)
    limb(NECK, neck + 0.3 * r * down, head_centre, 0.42 * r)
    frames[HEAD] = np.stack([head_right * 0.88 * r, head_down * 1.08 * r, head_centre], axis=1)
    frames[TORSO] = np.stack([shoulder_vec, hip_mid - neck, neck], axis=1)
    turn = rng.uniform(-0.3, 0.3)
    face = {
        NOSE: (turn, 0.2),
        REYE: (turn - 0.36, -0.12),
        LEYE: (turn + 0.36, -0.12),
        REAR: (-0.97, 0.05),
        LEAR: (0.97, 0.05),
    }
    for index, (u, v) in face.items():
        points[index] = frames[HEAD] @ np.array([u, v, 1.0])
    # Ears are often hidden or not detected in real annotations.
    for index in (REAR, LEAR):
        if rng.random() < 0.25:
            points[index] = -1.0
    outside = np.any((points < 0) | (points > size - 1), axis=1)
    points[outside] = -1.0

    back, front = [], []
    for upper, lower in ((R_UPPER_ARM, R_LOWER_ARM), (L_UPPER_ARM, L_LOWER_ARM)):
        (front if rng.random() < 0.55 else back).extend([upper, lower])
    legs = [[R_THIGH, R_SHIN], [L_THIGH, L_SHIN]]
    rng.shuffle(legs)
    order = back + legs[0] + legs[1] + [TORSO, NECK, HEAD] + front
    return {"keypoints": points, "frames": frames, "order": order, "limb_ratio": shapes}


def _inverse_frames(frames):
    """Inverts [P, 2, 3] affine frames (local -> pixel) into pixel -> local."""
    linear = frames[:, :, :2]
    det = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    inv = np.empty_like(linear)
    inv[:, 0, 0] = linear[:, 1, 1] / det
    inv[:, 0, 1] = -linear[:, 0, 1] / det
    inv[:, 1, 0] = -linear[:, 1, 0] / det
    inv[:, 1, 1] = linear[:, 0, 0] / det
    offset = -np.einsum("pij,pj->pi", inv, frames[:, :, 2])
    return np.concatenate([inv, offset[:, :, None]], axis=2)


def _part_masks(local_u, local_v, pose, identity):
    """Inside-part masks [P, N] from local coordinates [P, N]."""
    masks = np.zeros(local_u.shape, bool)
    for part, ratio in pose["limb_ratio"].items():
        u, v = local_u[part], local_v[part]
        along = (u - np.clip(u, 0.0, 1.0)) * ratio
        masks[part] = along * along + v * v <= 1.0
    u, v = local_u[TORSO], local_v[TORSO]
    half = 1.08 + (identity["hip_ratio"] * 1.05 - 1.08) * np.clip(v, 0.0, 1.0)
    masks[TORSO] = (v >= -0.1) & (v <= 1.06) & (np.abs(u) <= half)
    u, v = local_u[HEAD], local_v[HEAD]
    masks[HEAD] = u * u + v * v <= 1.0
    return masks


def _texture_scale(identity, size):
    """Per-part (u, v) -> texture-unit scales, fixed per identity so textures stick."""
    unit = size / 64.0
    scale = np.ones((NUM_PARTS, 2))
    lengths = {
        R_UPPER_ARM: ("upper_arm", "w_upper_arm"),
        L_UPPER_ARM: ("upper_arm", "w_upper_arm"),
        R_LOWER_ARM: ("lower_arm", "w_lower_arm"),
        L_LOWER_ARM: ("lower_arm", "w_lower_arm"),
        R_THIGH: ("thigh", "w_thigh"),
        L_THIGH: ("thigh", "w_thigh"),
        R_SHIN: ("shin", "w_shin"),
        L_SHIN: ("shin", "w_shin"),
    }
    for part, (length, width) in lengths.items():
        scale[part] = identity[length], identity[width]
    scale[TORSO] = identity["shoulder_half"], identity["torso_len"]
    scale[HEAD] = identity["head_r"], identity["head_r"]
    scale[NECK] = identity["neck_len"], identity["head_r"] * 0.4
    return scale / unit


def _pattern(kind, s, t, period, angle):
    q = s * np.cos(angle) + t * np.sin(angle)
    w = -s * np.sin(angle) + t * np.cos(angle)
    k = 2 * np.pi / period
    stripes = 0.5 + 0.5 * np.sin(k * q)
    checks = 0.5 + 0.5 * np.sin(k * q) * np.sin(k * w)
    dq = np.mod(q, period) - period / 2
    dw = np.mod(w, period) - period / 2
    dots = np.exp(-(dq * dq + dw * dw) / (2 * (period / 6) ** 2))
    return np.choose(kind, [np.zeros_like(s), stripes, checks, dots])


@functools.lru_cache(maxsize=8)
def _grid(size):
    ys, xs = np.divmod(np.arange(size * size), size)
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def render_background(background, size):
    """Renders a ``sample_background`` as float [size, size, 3] in [0, 1]."""
    xs, ys = _grid(size)
    fy = (ys / (size - 1))[:, None]
    fx = (xs / (size - 1))[:, None]
    bg = background["top"] * (1 - fy) + background["bottom"] * fy
    bg = bg + background["amp"] * np.sin(
        2 * np.pi * (background["freq"][0] * fx + background["freq"][1] * fy)
        + background["phase"][0]
    )
    floor = np.clip((fy - background["floor_level"]) * size / 2.0, 0.0, 1.0)
    bg = bg * (1 - floor) + background["floor"] * floor
    return np.clip(bg, 0.0, 1.0).reshape(size, size, 3)


def render_person(identity, pose, background, size, background_image=None):
    """Renders one image with its part-id and local-coordinate buffers.

    Args:
      identity: from ``sample_identity``.
      pose: from ``sample_pose``.
      background: from ``sample_background``.
      size: image size in pixels.
      background_image: ``render_background(background, size)``, when already computed.

    Returns:
      ``(image, part_id, local)``: float32 [size, size, 3] in [0, 1], int [size, size]
      (0 = background) and float [size, size, 2] local coordinates of each pixel's part.
    """
    n = size * size
    xs, ys = _grid(size)
    inv = _inverse_frames(pose["frames"])
    local_u = inv[:, 0, 0, None] * xs + inv[:, 0, 1, None] * ys + inv[:, 0, 2, None]
    local_v = inv[:, 1, 0, None] * xs + inv[:, 1, 1, None] * ys + inv[:, 1, 2, None]
    masks = _part_masks(local_u, local_v, pose, identity)
    part_id = np.zeros(n, np.int64)
    for part in pose["order"]:
        part_id[masks[part]] = part
    # Texture only the person's pixels.
    idx = np.flatnonzero(part_id)
    pid = part_id[idx]
    u = local_u[pid, idx]
    v = local_v[pid, idx]
    if background_image is None:
        background_image = render_background(background, size)

    # Per-part clothing parameters.
    shirt, trousers = identity["shirt"], identity["trousers"]
    garments = [None] * NUM_PARTS
    for part in (TORSO, R_UPPER_ARM, L_UPPER_ARM):
        garments[part] = shirt
    for part in (R_LOWER_ARM, L_LOWER_ARM):
        garments[part] = shirt if identity["long_sleeves"] else None
    for part in LEG_PARTS:
        garments[part] = trousers
    c1 = np.tile(identity["skin"], (NUM_PARTS, 1))
    c2 = c1.copy()
    kind = np.zeros(NUM_PARTS, np.int64)
    period = np.full(NUM_PARTS, 7.0)
    angle = np.zeros(NUM_PARTS)
    for part, garment in enumerate(garments):
        if garment is not None:
            c1[part], c2[part] = garment["c1"], garment["c2"]
            kind[part], period[part], angle[part] = (
                garment["pattern"],
                garment["period"],
                garment["angle"],
            )
    scale = _texture_scale(identity, size)
    s = u * scale[pid, 0]
    t = v * scale[pid, 1]
    m = _pattern(kind[pid], s, t, period[pid], angle[pid])[:, None]
    colour = c1[pid] * (1 - m) + c2[pid] * m

    # Details that live in part coordinates too: hands, shoes, hair and eyes.
    is_lower_arm = (pid == R_LOWER_ARM) | (pid == L_LOWER_ARM)
    hand = (np.clip((u - 0.82) * 8.0, 0.0, 1.0) * is_lower_arm)[:, None]
    colour = colour * (1 - hand) + identity["skin"] * hand
    is_shin = (pid == R_SHIN) | (pid == L_SHIN)
    shoe = (np.clip((u - 0.85) * 8.0, 0.0, 1.0) * is_shin)[:, None]
    colour = colour * (1 - shoe) + identity["shoes"] * shoe
    is_head = pid == HEAD
    hair = (np.clip((-v - 0.3 + 0.15 * np.abs(u)) * 5.0, 0.0, 1.0) * is_head)[:, None]
    colour = colour * (1 - hair) + identity["hair"] * hair
    for eye in (REYE, LEYE):
        point = pose["keypoints"][eye]
        if point[0] >= 0:
            eu, ev = _inverse_frames(pose["frames"][HEAD : HEAD + 1])[0] @ np.array([*point, 1.0])
            blob = np.exp(-((u - eu) ** 2 + (v - ev) ** 2) / (2 * 0.1**2)) * is_head
            colour = colour * (1 - 0.8 * blob[:, None])

    # Cylinder-like shading across limbs, a gentle one across torso and head.
    shade = np.ones(len(pid))
    limbs = np.isin(pid, ARM_PARTS + LEG_PARTS + (NECK,))
    shade = np.where(limbs, 1.0 - 0.3 * v * v, shade)
    shade = np.where(pid == TORSO, 1.0 - 0.15 * u * u, shade)
    shade = np.where(is_head, 1.0 - 0.2 * (u * u + v * v), shade)
    image = background_image.reshape(n, 3).copy()
    image[idx] = colour * shade[:, None]
    image = np.clip(image, 0.0, 1.0).reshape(size, size, 3).astype(np.float32)
    local = np.zeros((n, 2))
    local[idx, 0], local[idx, 1] = u, v
    return image, part_id.reshape(size, size), local.reshape(size, size, 2)


def pair_flow(source_pose, target_pose, source_ids, target_ids):
    """The exact backward flow target -> source and the target's visibility.

    Args:
      source_pose: ``sample_pose`` result of the source image.
      target_pose: ``sample_pose`` result of the target image.
      source_ids: [H, W] part ids of the source render.
      target_ids: [H, W] part ids of the target render.

    Returns:
      ``(flow, visibility)``: float [H, W, 2] pixels and bool [H, W].
    """
    height, width = target_ids.shape
    inv_target = _inverse_frames(target_pose["frames"])
    # Per part: pixel in target -> local -> pixel in source (a 2x3 affine).
    lin = np.einsum("pij,pjk->pik", source_pose["frames"][:, :, :2], inv_target[:, :, :2])
    off = (
        np.einsum("pij,pj->pi", source_pose["frames"][:, :, :2], inv_target[:, :, 2])
        + source_pose["frames"][:, :, 2]
    )
    lin[0] = np.eye(2)
    off[0] = 0.0
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width), indexing="ij")
    ids = target_ids
    sx = lin[ids, 0, 0] * xx + lin[ids, 0, 1] * yy + off[ids, 0]
    sy = lin[ids, 1, 0] * xx + lin[ids, 1, 1] * yy + off[ids, 1]
    flow = np.stack([sx - xx, sy - yy], axis=-1)
    inside = (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, width - 1)
    y0 = np.clip(np.floor(sy).astype(np.int64), 0, height - 1)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    visible = inside
    for yi in (y0, y1):
        for xi in (x0, x1):
            visible = visible & (source_ids[yi, xi] == ids)
    return flow, visible


class _RecordedDraws:
    """The random draws of ``sample_pose``, recorded so that a nearby pose can replay them."""

    def __init__(self, rng):
        self._rng = rng
        self.draws = []

    def uniform(self, low, high):
        value = float(self._rng.uniform(low, high))
        self.draws.append(value)
        return value

    def random(self):
        value = float(self._rng.random())
        self.draws.append(value)
        return value

    def choice(self, options):
        value = self._rng.choice(options)
        self.draws.append(value)
        return value

    def shuffle(self, items):
        order = self._rng.permutation(len(items))
        items[:] = [items[i] for i in order]
        self.draws.append(order)


class _NearbyDraws:
    """Replays recorded draws, each continuous one moved a fraction ``t`` towards a fresh one.

    Discrete draws (elbow bend direction, hidden ears, painting order) are replayed as
    they were, so the nearby pose is the same kind of pose, changed by ``t`` of the way to
    an independent one in every angle and offset.
    """

    def __init__(self, rng, draws, t):
        self._rng = rng
        self._draws = iter(draws)
        self._t = float(t)

    def uniform(self, low, high):
        old = next(self._draws)
        return old + self._t * (float(self._rng.uniform(low, high)) - old)

    def random(self):
        return next(self._draws)

    def choice(self, options):
        return next(self._draws)

    def shuffle(self, items):
        order = next(self._draws)
        items[:] = [items[i] for i in order]


def sample_pose_pair(rng, identity, size, pose_change=1.0):
    """Samples a source and a target pose, the target ``t ~ U(0, pose_change)`` of the way
    from the source to an independent pose.

    Args:
      rng: numpy Generator.
      identity: from ``sample_identity``.
      size: image size in pixels.
      pose_change: in (0, 1]; 1 samples two independent poses.

    Returns:
      Two ``sample_pose`` dicts.

    Raises:
      ValueError: if ``pose_change`` is outside (0, 1].
    """
    if not 0.0 < pose_change <= 1.0:
        raise ValueError(f"pose_change must be in (0, 1], got {pose_change!r}")
    if pose_change == 1.0:
        return [sample_pose(rng, identity, size) for _ in range(2)]
    recorder = _RecordedDraws(rng)
    source = sample_pose(recorder, identity, size)
    t = rng.uniform(0.0, pose_change)
    target = sample_pose(_NearbyDraws(rng, recorder.draws, t), identity, size)
    return [source, target]


def render_pair(seed, size, pose_change=1.0):
    """Renders one identity in two poses with the flows in both directions.

    Args:
      seed: a numpy seed (int or sequence of ints); the pair is a function of it.
      size: image size in pixels.
      pose_change: how far the second pose is from the first, in (0, 1] (see
        ``sample_pose_pair``); 1 = independent poses.

    Returns:
      A dict with ``images`` (two uint8 [size, size, 3]), ``keypoints`` (two [18, 2]),
      ``part_ids`` (two int arrays) and ``flows`` / ``visibility``: entry ``(i, j)`` is the
      backward flow from image j (target) to image i (source).
    """
    rng = np.random.default_rng(seed)
    identity = sample_identity(rng, size)
    background = sample_background(rng)
    poses = sample_pose_pair(rng, identity, size, pose_change)
    backdrop = render_background(background, size)
    renders = [render_person(identity, pose, background, size, backdrop) for pose in poses]
    images = [np.rint(r[0] * 255.0).astype(np.uint8) for r in renders]
    ids = [r[1] for r in renders]
    flows, visibility = {}, {}
    for i, j in ((0, 1), (1, 0)):
        flows[(i, j)], visibility[(i, j)] = pair_flow(poses[i], poses[j], ids[i], ids[j])
    return {
        "images": images,
        "keypoints": [p["keypoints"] for p in poses],
        "part_ids": ids,
        "flows": flows,
        "visibility": visibility,
    }
