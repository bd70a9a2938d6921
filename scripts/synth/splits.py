"""Fixed, seeded data splits shared by every training script.

A split by file-name hash never changes when files are added or the dataset is re-listed, so a
crop held out once stays held out for every model trained later.
"""

from __future__ import annotations

import hashlib

HOLDOUT_TENTHS = 3
"""Three files in ten (by name hash) are kept for measuring, never for training."""


def is_holdout(file_name: str) -> bool:
    """True when a plate crop (e.g. ``openalpr-us-plate-crops/ak1165.jpg`` -> ``ak1165.jpg``)
    is held out of training."""
    return int(hashlib.sha256(file_name.encode()).hexdigest(), 16) % 10 < HOLDOUT_TENTHS
