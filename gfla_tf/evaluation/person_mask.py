"""The person mask of Market-1501's masked LPIPS, as the GFLA/PATN evaluation draws it.

``produce_ma_mask`` of the authors' ``script/metrics.py``: from the target pose's 18
keypoints, a quadrilateral of half-width ``point_radius`` along each of 23 joint pairs
(the limbs plus shoulder-hip and ear-ear links), a disc of radius ``point_radius`` at each
keypoint (missing keypoints and the pairs touching them skipped), then a 5x5 closing
(dilation, then erosion). Drawn with scikit-image as they draw it.
"""

import numpy as np

# 1-based COCO-18 keypoint pairs of the authors' mask (nose 1, neck 2, ...).
MASK_LIMBS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (2, 17), (2, 18),
    (9, 12), (12, 6), (9, 3), (17, 18),
)  # fmt: skip
POINT_RADIUS = 4


def keypoint_mask(keypoints, size, point_radius=POINT_RADIUS):
    """The authors' person mask of one pose.

    Args:
      keypoints: [18, 2] (x, y) pixels in the frame of ``size``; a negative coordinate
        marks a missing keypoint.
      size: (height, width) of the mask.
      point_radius: half-width of the limb quadrilaterals and radius of the joint discs.

    Returns:
      bool [height, width].
    """
    from skimage.draw import disk, polygon
    from skimage.morphology import dilation, erosion

    points = np.asarray(keypoints, np.float64)[:, ::-1]  # (row, col) as the authors'
    present = (points >= 0).all(axis=1)
    mask = np.zeros(tuple(int(s) for s in size), bool)
    for first, second in MASK_LIMBS:
        a, b = first - 1, second - 1
        if not (present[a] and present[b]):
            continue
        normal = points[a] - points[b]
        length = np.linalg.norm(normal)
        if length == 0:
            continue  # the authors' division by zero gives NaN vertices: nothing drawn
        normal = point_radius * np.array([-normal[1], normal[0]]) / length
        corners = np.array(
            [points[a] + normal, points[a] - normal, points[b] - normal, points[b] + normal]
        )
        rows, cols = polygon(corners[:, 0], corners[:, 1], shape=mask.shape)
        mask[rows, cols] = True
    for index in np.flatnonzero(present):
        rows, cols = disk(tuple(points[index]), point_radius, shape=mask.shape)
        mask[rows, cols] = True
    square = np.ones((5, 5), bool)
    return erosion(dilation(mask, square), square)
