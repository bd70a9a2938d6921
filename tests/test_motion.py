"""The motion gate on synthetic scenes: texture, sensor noise, moving boxes, dusk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from edge.config import MotionSettings
from edge.motion import MotionGate, roi_mask

WIDTH, HEIGHT = 960, 540
DT = 0.1  # 10 fps


def motion_settings(**fields: object) -> MotionSettings:
    return MotionSettings.model_validate(fields)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A still street: smooth texture in mid greys, so brightness can drift without clipping."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(60, 150, size=(HEIGHT // 20, WIDTH // 20, 1), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 20, axis=0), 20, axis=1).repeat(3, axis=2)


def noisy(image: np.ndarray, rng: np.random.Generator, offset: float = 0.0) -> np.ndarray:
    """The scene as a sensor sees it: +-3 grey levels of noise, plus a global offset."""
    noise = rng.standard_normal(size=image.shape[:2], dtype=np.float32) * 3.0 + offset
    seen: np.ndarray = np.clip(image + noise[:, :, None], 0, 255).astype(np.uint8)
    return seen


def with_box(image: np.ndarray, x: int, y: int = 300, w: int = 240, h: int = 140) -> np.ndarray:
    out = image.copy()
    out[y : y + h, x : x + w] = 25  # a dark car
    return out


def run(gate: MotionGate, frames: Iterator[np.ndarray] | Sequence[np.ndarray]) -> list[bool]:
    return [gate.update(frame, now=i * DT) for i, frame in enumerate(frames)]


def test_static_scene_is_not_motion_after_warm_up(scene: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate(motion_settings())
    results = run(gate, (noisy(scene, rng) for _ in range(50)))
    assert results[0]  # no background yet: let the detector look
    assert not any(results[10:])


def test_moving_box_is_motion_and_is_held_after_it_leaves(scene: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    gate = MotionGate(motion_settings(), hold_s=0.5)
    still = [noisy(scene, rng) for _ in range(20)]
    driving = [noisy(with_box(scene, 40 + 45 * i), rng) for i in range(15)]
    gone = [noisy(scene, rng) for _ in range(30)]
    results = run(gate, still + driving + gone)

    assert not any(results[10:20])
    assert all(results[20:35])
    after = results[35:]
    # Hold: the 0.5 s after the box left still pass, then the gate closes again.
    assert all(after[:4])
    assert not any(after[12:])


def test_slow_brightness_drift_is_not_motion(scene: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    gate = MotionGate(motion_settings())
    # Dusk, fast: 0.5 grey levels a frame, 50 levels in 10 s.
    results = run(gate, (noisy(scene, rng, offset=-0.5 * i) for i in range(100)))
    assert not any(results[10:])


def test_exposure_step_across_the_whole_view_is_not_motion(scene: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    gate = MotionGate(motion_settings())
    # Auto-exposure reacting to a cloud: the whole view 35 levels darker from one frame on.
    frames = [noisy(scene, rng, offset=0.0 if i < 20 else -35.0) for i in range(30)]
    assert not any(run(gate, frames)[10:])


def test_motion_outside_the_roi_is_ignored(scene: np.ndarray) -> None:
    left_half = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]

    def drive(x0: int) -> list[bool]:
        rng = np.random.default_rng(4)
        gate = MotionGate(motion_settings(), roi=left_half)
        still = [noisy(scene, rng) for _ in range(10)]
        driving = [noisy(with_box(scene, x0 + 15 * i), rng) for i in range(10)]
        return run(gate, still + driving)[10:]

    assert not any(drive(x0=520))  # right half, outside the ROI
    assert all(drive(x0=60))  # left half, inside


def test_threshold_is_a_share_of_the_roi(scene: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    frames = [noisy(scene, rng) for _ in range(10)] + [noisy(with_box(scene, 450, w=45, h=30), rng)]
    # The small box is about 0.26 % of the view.
    assert run(MotionGate(motion_settings(threshold=0.001)), frames)[-1]
    assert not run(MotionGate(motion_settings(threshold=0.01)), frames)[-1]


def test_disabled_gate_passes_everything(scene: np.ndarray) -> None:
    gate = MotionGate(motion_settings(enabled=False))
    assert all(run(gate, [scene] * 5))


def test_gate_does_not_change_the_callers_image(scene: np.ndarray) -> None:
    gate = MotionGate(motion_settings())
    frame = scene.copy()
    gate.update(frame, now=0.0)
    gate.update(frame, now=0.1)
    assert np.array_equal(frame, scene)


def test_grayscale_frames_are_accepted(scene: np.ndarray) -> None:
    gray = np.ascontiguousarray(scene[:, :, 0])
    gate = MotionGate(motion_settings())
    results = [gate.update(gray, now=i * DT) for i in range(10)]
    assert not any(results[6:])


def test_roi_mask_fills_the_polygon() -> None:
    full = roi_mask((90, 160, 3), None)
    assert full.shape == (90, 160) and full.dtype == np.uint8 and (full == 255).all()

    whole = roi_mask((90, 160), [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    assert (whole == 255).all()

    triangle = roi_mask((100, 200), [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
    assert set(np.unique(triangle)) == {0, 255}
    assert triangle[5, 5] == 255 and triangle[95, 195] == 0
    assert np.count_nonzero(triangle) / triangle.size == pytest.approx(0.5, abs=0.02)
