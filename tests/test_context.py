"""The plate-text context prior: an O or Q between two digits is read as the digit.

Unit tests on constructed reads and on ``finish_reads``, the step PlateReader (the daemon,
``read``) and ``alpr-edge evaluate`` on crops all run after the recognizer.
"""

from __future__ import annotations

import pytest
from reads import Slot, make_read, sure

from edge.inference.context import round_letters_between_digits
from edge.inference.patterns import PlatePatterns
from edge.pipeline import finish_reads
from edge.types import PlateStatus


@pytest.mark.parametrize("letter", ["O", "Q"])
def test_round_letter_between_digits_becomes_the_digit(letter: str) -> None:
    # Czech 1B8 0338: the recognizer split the fourth character between O and 0.
    read = make_read(*sure("1B8"), (letter, 0.51, {"0": 0.48, "D": 0.01}), *sure("338"))
    fixed = round_letters_between_digits(read)
    assert fixed.text == "1B80338"
    slot = fixed.chars[3]
    assert slot.char == "0"
    assert slot.alternatives == ()  # the letters are gone, the digit holds their mass
    assert slot.prob == pytest.approx(1.0)
    assert fixed.confidence == pytest.approx(1.0)
    assert fixed.status is PlateStatus.FULL


def test_mass_the_recognizer_left_unassigned_stays_unassigned() -> None:
    # Candidates summing to 0.9: the rest was the CTC blank; the prior must not invent it.
    read = make_read(*sure("12"), ("O", 0.6, {"0": 0.2, "8": 0.1}), *sure("45"))
    fixed = round_letters_between_digits(read)
    slot = fixed.chars[2]
    assert slot.char == "0"
    assert slot.prob == pytest.approx(0.6)  # 0.2 / 0.3 of 0.9
    assert [(a.char, round(a.prob, 6)) for a in slot.alternatives] == [("8", 0.3)]
    assert fixed.confidence == pytest.approx(0.6)


@pytest.mark.parametrize(
    "slots",
    [
        # at either end: one neighbour is no context (UK OY09 FEU starts with a letter O)
        [("O", 0.7, {"0": 0.3}), *sure("Y09FEU")],
        [*sure("RK708A"), ("O", 0.7, {"0": 0.3})],
        # a letter on one side: Czech 4BO 4979 has a letter O after the B
        [*sure("4B"), ("O", 0.7, {"0": 0.3}), *sure("4979")],
        # the recognizer saw no digit there
        [*sure("12"), ("O", 0.7, {"Q": 0.3}), *sure("45")],
        # letters that do stand between digits (Mercosul ABC1D23, US 4W5825)
        [*sure("ABC1"), ("D", 0.6, {"0": 0.4}), *sure("23")],
        [*sure("2"), ("B", 0.6, {"8": 0.4}), *sure("699")],
        # a zero between letters is left alone: vanity plates spell words with it
        [*sure("CUST"), ("0", 0.6, {"O": 0.4}), *sure("M")],
    ],
    ids=["first", "last", "letter-neighbour", "no-digit", "mercosul-d", "b", "vanity-zero"],
)
def test_reads_outside_the_rule_are_left_as_they_were(slots: list[Slot]) -> None:
    read = make_read(*slots)
    assert round_letters_between_digits(read) is read


def test_every_round_letter_in_a_digit_run_is_fixed() -> None:
    read = make_read(
        *sure("7"), ("O", 0.8, {"0": 0.2}), *sure("1"), ("Q", 0.5, {"0": 0.5}), *sure("9")
    )
    assert round_letters_between_digits(read).text == "70109"


def test_finish_reads_applies_the_context_before_the_agency_formats() -> None:
    # With Brazil's formats only, "1O2" is not a known length and would stay as read; the
    # context prior still fixes it, and a BR-length read is held to the format afterwards.
    short = make_read(*sure("1"), ("O", 0.9, {"0": 0.1}), *sure("2"))
    br = make_read(*sure("AB"), ("8", 0.6, {"B": 0.4}), *sure("1234"))
    out = finish_reads([short, br], PlatePatterns(["LLLNNNN"]))
    assert [r.text for r in out] == ["102", "ABB1234"]
    assert [r.text for r in finish_reads([short, br], None)] == ["102", "AB81234"]
