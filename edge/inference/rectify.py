"""Plate crops: an upright, perspective-corrected crop for the recognizer and an axis-aligned
crop for storage.

Pure numpy/OpenCV; never returns an empty array, whatever the detection's geometry.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Detection, ImageArray

MIN_SIDE = 2.0
"""Degenerate detections (a point, a line) still produce a small, valid crop."""
MAX_ASPECT = 12.0
"""Wider than any plate plus margin; a runaway corner regression cannot produce a 1x500 strip."""

Quad = npt.NDArray[np.float64]


def plate_quad(detection: Detection) -> Quad:
    """Top-left, top-right, bottom-right, bottom-left as a 4 x 2 array."""
    if detection.corners is not None:
        q = np.asarray(detection.corners, np.float64).reshape(4, 2)
        if np.isfinite(q).all():
            return q
    x1, y1, x2, y2 = detection.box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def rectify_plate(
    image: ImageArray, detection: Detection, *, margin: float = 0.08, height: int = 64
) -> ImageArray:
    """Warp the plate into an upright crop ``height`` pixels tall.

    The width follows the plate's own aspect ratio (mean of its opposite side lengths), so a
    plate seen at an angle is not squashed; ``margin`` (a fraction of the plate height) is kept
    on every side so characters that touch the detected edge survive.
    """
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"rectify_plate needs a non-empty image; got shape {image.shape}")
    if height < 1:
        raise ValueError(f"height must be >= 1; got {height}")
    q = plate_quad(detection)
    top = float(np.linalg.norm(q[1] - q[0]))
    bottom = float(np.linalg.norm(q[2] - q[3]))
    left = float(np.linalg.norm(q[3] - q[0]))
    right = float(np.linalg.norm(q[2] - q[1]))
    plate_w = max((top + bottom) / 2, MIN_SIDE)
    plate_h = max((left + right) / 2, MIN_SIDE)
    aspect = min((plate_w + 2 * margin * plate_h) / (plate_h * (1 + 2 * margin)), MAX_ASPECT)
    out_h = int(height)
    out_w = max(round(out_h * aspect), 1)
    # Map the plate quad to the output rectangle inset by the margin; the warp then also pulls
    # in the margin around the plate. Pixels outside the image replicate its edge.
    m_px = margin * out_h / (1 + 2 * margin)
    dst = np.array(
        [[m_px, m_px], [out_w - m_px, m_px], [out_w - m_px, out_h - m_px], [m_px, out_h - m_px]],
        np.float32,
    )
    src = q.astype(np.float32)
    if plate_w <= MIN_SIDE or plate_h <= MIN_SIDE or _is_degenerate(src):
        # No usable geometry: centre a MIN_SIDE square on the detection instead.
        c = src.mean(axis=0)
        h = MIN_SIDE / 2
        src = np.array(
            [
                [c[0] - h, c[1] - h],
                [c[0] + h, c[1] - h],
                [c[0] + h, c[1] + h],
                [c[0] - h, c[1] + h],
            ],
            np.float32,
        )
    matrix = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(
        image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    result: ImageArray = np.ascontiguousarray(out)
    return result


def _is_degenerate(q: npt.NDArray[np.float32]) -> bool:
    """True when three corners are (nearly) collinear, where a homography is undefined."""
    for i in range(4):
        a, b, c = q[i], q[(i + 1) % 4], q[(i + 2) % 4]
        cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(float(cross)) < 1.0:
            return True
    return False


def plate_crop(image: ImageArray, detection: Detection, *, margin: float = 0.15) -> ImageArray:
    """The plate's bounding box plus ``margin`` (fraction of the plate height) on each side,
    clipped to the image: what is stored and sent. A copy, never a view of the frame."""
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"plate_crop needs a non-empty image; got shape {image.shape}")
    q = plate_quad(detection)
    h_img, w_img = image.shape[:2]
    x1, y1 = q.min(axis=0)
    x2, y2 = q.max(axis=0)
    # Margin from the plate height only: a tall margin would take in the windscreen.
    pad = margin * max(y2 - y1, MIN_SIDE)
    left = int(np.clip(np.floor(x1 - pad), 0, w_img - 1))
    top = int(np.clip(np.floor(y1 - pad), 0, h_img - 1))
    right = int(np.clip(np.ceil(x2 + pad), left + 1, w_img))
    bottom = int(np.clip(np.ceil(y2 + pad), top + 1, h_img))
    crop: ImageArray = image[top:bottom, left:right].copy()
    return crop
