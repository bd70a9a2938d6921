"""Read images from disk with a clear error instead of OpenCV's silent None."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.errors import InputError
from edge.types import ImageArray


def load_image(path: Path) -> ImageArray:
    """Read an image file as BGR uint8; InputError naming the file when it cannot be read."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"image {path}: cannot read: {exc.strerror}") from None
    if data.size == 0:
        raise InputError(f"image {path}: file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"image {path}: not a decodable image (corrupt or unsupported format)")
    return np.asarray(image, dtype=np.uint8)
