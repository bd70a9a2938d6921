"""The synthetic plate generator's European formats: layouts, band codes and labels."""

from __future__ import annotations

import numpy as np

from scripts.synth import plates


def _shape(text: str) -> str:
    return "".join("L" if c.isalpha() else "D" if c.isdigit() else c for c in text)


def test_other_european_plates_follow_a_listed_country_format() -> None:
    rng = np.random.default_rng(0)
    formats = {f for _, group in plates._EU_OTHER_FORMATS for f in group}
    shapes = {_shape(plates.random_text(rng, "eu_other")) for _ in range(400)}
    assert shapes <= formats
    assert len(shapes) > len(formats) // 2  # the draw spreads over the countries


def test_the_band_code_is_a_country_whose_format_the_text_has() -> None:
    rng = np.random.default_rng(0)
    assert plates._eu_other_code(rng, "1A2 3456") == "CZ"
    assert plates._eu_other_code(rng, "AB12 CDE") == "GB"
    assert {plates._eu_other_code(rng, "BA-302OZ") for _ in range(60)} == {"SK", "I"}
    assert {plates._eu_other_code(rng, "AB 123CD") for _ in range(60)} == {"SK", "PL", "I"}
    assert plates._eu_other_code(rng, "ABCDEFG") == "EU"


def test_other_european_plates_are_labelled_without_separators() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):  # half are drawn with O as the font's 0; the label keeps the letter
        image, label = plates.render_plate_clean(rng, "HO-098OT", "eu_other")
        assert label == "HO098OT"
        assert image.ndim == 3 and image.shape[2] == 3
