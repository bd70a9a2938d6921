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


def test_a_slab_serif_i_has_bars_wider_than_its_stem_at_top_and_bottom_only() -> None:
    stem = np.ones((64, 8), np.float32)
    glyph = plates.with_slab_serifs(stem, reach=0.125, bar=0.75)
    assert glyph.shape == (64, 8 + 2 * 8)
    assert glyph[:6].min() == 1.0 and glyph[-6:].min() == 1.0  # both bars, full width
    middle = glyph[6:-6]
    assert middle[:, 8:16].min() == 1.0  # the stem
    assert middle[:, :8].max() == 0.0 and middle[:, 16:].max() == 0.0  # nothing beside it


def _drawn_i(serif_i: bool) -> np.ndarray:
    canvas = np.zeros((80, 80, 3), np.uint8)
    font = plates._PLATE_FONTS[0]
    rng = np.random.default_rng(0)
    plates._draw_main_text(
        rng, canvas, "I", (0, 10, 80, 60), font, (255, 255, 255), 1.0, serif_i=serif_i
    )
    ink: np.ndarray = canvas[:, :, 0] > 128
    return ink


def test_serif_i_draws_bars_across_the_top_and_bottom_of_the_letter_i() -> None:
    for serif_i in (False, True):
        ink = _drawn_i(serif_i)
        rows = np.nonzero(ink.any(axis=1))[0]
        top, mid = ink[rows[0]].sum(), ink[(rows[0] + rows[-1]) // 2].sum()
        bottom = ink[rows[-1]].sum()
        if serif_i:
            assert top > 2 * mid and bottom > 2 * mid
        else:
            assert top <= mid + 1 and bottom <= mid + 1


def test_us_plates_are_labelled_the_same_whichever_i_is_drawn() -> None:
    rng = np.random.default_rng(2)
    for _ in range(12):
        _, label = plates.render_plate_clean(rng, "IRI-1II", "us")
        assert label == "IRI1II"
