"""``alpr-edge snapshot``: one annotated frame, so a technician can aim and focus a camera from
a laptop or phone.

Drawn on the frame: the region of interest, each plate's box and corners, what was read there
(text and confidence) and the plate's character height in pixels, the number that decides
whether a camera is zoomed in far enough. Plates outside the region of interest are drawn in
grey: the daemon ignores them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.camera import open_source
from edge.config import CameraSettings, Settings
from edge.errors import CameraError, ConfigError, InputError
from edge.motion import roi_mask
from edge.pipeline import PlateReader
from edge.types import Detection, Frame, ImageArray, PlateResult

CHAR_HEIGHT_PER_PLATE_HEIGHT = 0.6
"""Characters are about 0.6 of a plate's height: ~0.5 on US plates (3 in of 6 in), ~0.7 on EU
ones (75-77 mm of 110 mm). An estimate for aiming, not a measurement of the glyphs."""
MIN_CHAR_HEIGHT_PX = 15
"""Below this the recognizer starts to miss characters: the label turns red."""

ROI_COLOUR = (255, 200, 0)  # BGR
IN_ROI_COLOUR = (0, 220, 0)
OUT_OF_ROI_COLOUR = (150, 150, 150)
CORNER_COLOUR = (0, 220, 255)
SMALL_COLOUR = (0, 0, 255)


@dataclass(frozen=True, slots=True)
class SnapshotPlate:
    result: PlateResult
    char_height_px: float
    in_roi: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    frame: Frame
    plates: tuple[SnapshotPlate, ...]

    def summary(self) -> str:
        h, w = self.frame.image.shape[:2]
        reads = ", ".join(
            f"{p.result.recognition.text or '?'} ({p.result.recognition.confidence:.2f}, "
            f"{p.char_height_px:.0f} px characters{'' if p.in_roi else ', outside ROI'})"
            for p in self.plates
        )
        head = f"frame {self.frame.index} ({w}x{h}): {len(self.plates)} plate(s)"
        return f"{head}: {reads}" if reads else head


def plate_height_px(detection: Detection) -> float:
    """Height of the plate: the mean of its left and right edges when the detector gives
    corners (a tilted plate's box is taller than the plate), else the box height."""
    if detection.corners is None:
        return detection.height
    tl, tr, br, bl = detection.corners
    left = float(np.hypot(bl[0] - tl[0], bl[1] - tl[1]))
    right = float(np.hypot(br[0] - tr[0], br[1] - tr[1]))
    return (left + right) / 2.0


def find_camera(settings: Settings, camera_id: str) -> CameraSettings:
    for camera in settings.cameras:
        if camera.id == camera_id:
            return camera
    known = ", ".join(c.id for c in settings.cameras)
    raise ConfigError(f"no camera {camera_id!r} in the config (cameras: {known})")


def take_snapshot(
    settings: Settings, camera: CameraSettings, *, wait_s: float, reader: PlateReader | None = None
) -> Snapshot:
    """Read frames for up to ``wait_s`` seconds and keep the first one with a plate (else the
    last one read): an empty road shows little about aim and focus."""
    reader = reader or PlateReader.from_settings(settings.models)
    source = open_source(camera)
    source.open()
    best: Snapshot | None = None
    try:
        deadline = time.monotonic() + wait_s
        mask: ImageArray | None = None
        while True:
            frame = source.read()
            if frame is None:
                break
            if camera.roi is not None and (mask is None or mask.shape[:2] != frame.image.shape[:2]):
                mask = roi_mask(frame.image.shape[:2], camera.roi)
            best = Snapshot(frame, _plates(reader, frame.image, mask))
            if best.plates or time.monotonic() >= deadline:
                break
    finally:
        source.close()
    if best is None:
        raise CameraError(f"{source.description}: opened but delivered no frame")
    return best


def _plates(
    reader: PlateReader, image: ImageArray, mask: ImageArray | None
) -> tuple[SnapshotPlate, ...]:
    results = reader.read(image)
    plates = []
    for r in results:
        cx, cy = r.detection.center
        inside = mask is None or bool(
            mask[min(max(int(cy), 0), mask.shape[0] - 1), min(max(int(cx), 0), mask.shape[1] - 1)]
        )
        plates.append(
            SnapshotPlate(r, plate_height_px(r.detection) * CHAR_HEIGHT_PER_PLATE_HEIGHT, inside)
        )
    return tuple(plates)


def annotate(snapshot: Snapshot, camera: CameraSettings) -> ImageArray:
    """A copy of the frame with the ROI, plates, reads and character heights drawn on it."""
    image = snapshot.frame.image.copy()
    h, w = image.shape[:2]
    scale = max(0.5, w / 1600)
    thick = max(1, round(w / 640))
    if camera.roi is not None:
        points = np.array([(x * w, y * h) for x, y in camera.roi], np.int32)
        cv2.polylines(image, [points], True, ROI_COLOUR, thick, cv2.LINE_AA)
    for plate in snapshot.plates:
        det = plate.result.detection
        colour = IN_ROI_COLOUR if plate.in_roi else OUT_OF_ROI_COLOUR
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thick)
        if det.corners is not None:
            quad = np.array(det.corners, np.int32)
            cv2.polylines(image, [quad], True, CORNER_COLOUR, thick, cv2.LINE_AA)
            for x, y in det.corners:
                cv2.circle(image, (round(x), round(y)), thick + 2, CORNER_COLOUR, -1)
        rec = plate.result.recognition
        small = plate.char_height_px < MIN_CHAR_HEIGHT_PX
        label = f"{rec.text or '?'} {rec.confidence:.2f}  chars {plate.char_height_px:.0f}px"
        _label(image, label, (x1, max(y1 - 4, 0)), SMALL_COLOUR if small else colour, scale)
    when = f"{snapshot.frame.captured_at:%Y-%m-%d %H:%M:%S} UTC"
    cam = f"{camera.id}  frame {snapshot.frame.index}  {w}x{h}  {when}"
    _label(image, cam, (4, 0), (255, 255, 255), scale, below=True)
    return image


def _label(
    image: ImageArray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    *,
    below: bool = False,
) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    x, y = origin
    top = y if below else max(y - th - base - 4, 0)
    cv2.rectangle(image, (x, top), (x + tw + 6, top + th + base + 4), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 3, top + th + 2), font, scale, colour, 1, cv2.LINE_AA)


def write_image_atomic(path: Path, image: ImageArray) -> None:
    """Encode by the file's suffix and replace ``path`` in one step (tmp, fsync, rename)."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"{path}: snapshot must be .png or .jpg")
    ok, buf = cv2.imencode(suffix, image)
    if not ok:
        raise InputError(f"{path}: cannot encode the snapshot as {suffix}")
    directory = path.parent if str(path.parent) else Path(".")
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write the snapshot: {exc.strerror}") from None
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
