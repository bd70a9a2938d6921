"""The plate crop that is stored and sent with a read: the plate and a small margin only.

The margin is the detector box grown a little (edge.inference.rectify.plate_crop), never the
windscreen or anything above the plate, so no occupant is ever in a stored image.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.inference.rectify import plate_crop
from edge.types import Detection, ImageArray

CROP_MAX_WIDTH = 320
CROP_JPEG_QUALITY = 85


def storage_crop(image: ImageArray, detection: Detection) -> ImageArray:
    """The plate and a small margin, at most CROP_MAX_WIDTH wide: never the windscreen."""
    crop = plate_crop(image, detection)
    h, w = crop.shape[:2]
    if w > CROP_MAX_WIDTH:
        size = (CROP_MAX_WIDTH, max(1, round(h * CROP_MAX_WIDTH / w)))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return crop


def encode_jpeg(crop: ImageArray | None) -> bytes:
    """JPEG bytes of a stored crop; empty when there is none."""
    if crop is None or crop.size == 0:
        return b""
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    return bytes(buf) if ok else b""
