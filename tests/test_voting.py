"""Per-character voting over the reads of one pass."""

from __future__ import annotations

from edge.inference.patterns import PlatePatterns
from edge.types import CharCandidate, CharSlot, PlateStatus, Recognition
from edge.voting import vote


def make_read(
    text: str,
    probs: list[float] | None = None,
    alts: dict[int, tuple[str, float]] | None = None,
    status: PlateStatus = PlateStatus.FULL,
) -> Recognition:
    probs = probs or [0.95] * len(text)
    alts = alts or {}
    slots = []
    for i, (ch, p) in enumerate(zip(text, probs, strict=True)):
        alt = (CharCandidate(*alts[i]),) if i in alts else ()
        slots.append(CharSlot(ch, p, alt))
    conf = 1.0
    for p in probs:
        conf *= p
    return Recognition(text=text, confidence=conf, chars=tuple(slots), status=status)


def test_majority_fixes_a_single_frame_confusion() -> None:
    reads = [make_read("ABC1234"), make_read("ABC1234"), make_read("A8C1234")]
    result = vote(reads)
    assert result.text == "ABC1234"
    assert result.status is PlateStatus.FULL
    assert result.candidates[0].text == "ABC1234"


def test_confident_frame_outvotes_unsure_ones_per_position() -> None:
    unsure = [0.95, 0.95, 0.3, 0.95, 0.95, 0.95, 0.95]
    reads = [
        make_read("ABO1234", unsure, {2: ("D", 0.25)}),
        make_read("ABO1234", unsure, {2: ("D", 0.25)}),
        make_read("ABD1234", [0.95] * 7),
    ]
    assert vote(reads).text == "ABD1234"


def test_length_is_chosen_by_weight_not_by_first_read() -> None:
    reads = [make_read("BC1234"), make_read("ABC1234"), make_read("ABC1234")]
    result = vote(reads)
    assert result.text == "ABC1234"
    assert any(c.text == "BC1234" for c in result.candidates)


def test_candidates_are_ranked_and_limited() -> None:
    reads = [
        make_read("ABC1234", [0.9, 0.9, 0.6, 0.9, 0.9, 0.5, 0.9], {2: ("O", 0.3), 5: ("8", 0.4)})
    ]
    result = vote(reads, max_candidates=3)
    assert len(result.candidates) == 3
    confs = [c.confidence for c in result.candidates]
    assert confs == sorted(confs, reverse=True)
    assert {"ABO1234", "ABC1284"} & {c.text for c in result.candidates}


def test_low_share_character_makes_plate_partial() -> None:
    reads = [make_read("ABC1234", [0.95, 0.95, 0.3, 0.95, 0.95, 0.95, 0.95], {2: ("O", 0.3)})]
    assert vote(reads).status is PlateStatus.PARTIAL


def test_paper_tags_win_when_enough_frames_say_so() -> None:
    reads = [make_read("T123456", status=PlateStatus.PAPER)] * 2 + [make_read("T123456")] * 2
    assert vote(reads).status is PlateStatus.PAPER


def test_nothing_read_means_no_plate() -> None:
    empty = Recognition(text="", confidence=0.0, chars=(), status=PlateStatus.NONE)
    result = vote([empty, empty])
    assert result.text == ""
    assert result.status is PlateStatus.NONE


def test_a_doubled_character_read_once_counts_for_the_double() -> None:
    reads = [make_read("BUY368")] * 3 + [make_read("BUY3688")] * 2
    assert vote(reads).text == "BUY3688"


def test_without_a_doubled_reading_the_short_text_stands() -> None:
    reads = [make_read("BUY368")] * 3 + [make_read("BUY3689")]
    assert vote(reads).text == "BUY368"


def test_the_voted_text_is_held_to_the_agency_formats() -> None:
    # Two frames read a digit 1 unsurely (I close behind); a third frame that fitted no
    # format was left as read, sure of an I. Their votes make a text no format allows.
    unsure = make_read("ABC1234", [0.95, 0.95, 0.95, 0.4, 0.95, 0.95, 0.95], {3: ("I", 0.35)})
    stray = make_read("ABCI234", [0.95, 0.95, 0.95, 0.99, 0.95, 0.95, 0.95])
    reads = [unsure, unsure, stray]
    assert vote(reads).text == "ABCI234"
    held = vote(reads, patterns=PlatePatterns(["LLLNNNN"]))
    assert held.text == "ABC1234"
    # The format leaves 1 the only candidate: it takes the mass the position's votes had.
    assert held.chars[3].char == "1" and held.chars[3].prob == 0.83
    assert held.candidates[0].text == "ABC1234"
    assert held.status is PlateStatus.FULL


def test_held_probabilities_are_rounded_like_the_vote() -> None:
    # Three frames split a position three ways; the format keeps the two digits and
    # renormalises them, which gives long fractions unless they are rounded.
    reads = [
        make_read("ABC1234", [0.95, 0.95, 0.95, 0.37, 0.95, 0.95, 0.95], {3: ("7", 0.31)}),
        make_read("ABCI234", [0.95, 0.95, 0.95, 0.9, 0.95, 0.95, 0.95], {3: ("1", 0.05)}),
        make_read("ABCI234", [0.95, 0.95, 0.95, 0.8, 0.95, 0.95, 0.95], {3: ("7", 0.11)}),
    ]
    held = vote(reads, patterns=PlatePatterns(["LLLNNNN"]))
    assert held.text[3] in "17"
    for slot in held.chars:
        assert slot.prob == round(slot.prob, 4)
        assert all(a.prob == round(a.prob, 4) for a in slot.alternatives)
    assert held.chars[3].alternatives, "the other digit stays a candidate"
