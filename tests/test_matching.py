"""Hot-list matching: exact, near (OCR evidence) and wildcard, and the index that avoids a scan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.hotlist import HotList, HotListEntry, HotListIndex
from edge.matching import (
    Evidence,
    Match,
    match_pattern,
    normalise_pattern,
)
from edge.types import CharCandidate, CharSlot, TextCandidate

NOW = datetime(2026, 11, 29, tzinfo=UTC)
ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def confident(text: str, prob: float = 0.99) -> Evidence:
    return Evidence(text, prob ** len(text), tuple(CharSlot(c, prob) for c in text))


def torn(text: str, position: int, runner_up: str, prob: float) -> Evidence:
    """``text`` read with the character at ``position`` torn: ``runner_up`` got ``prob``."""
    slots = [CharSlot(c, 0.98) for c in text]
    slots[position] = CharSlot(text[position], 1 - prob, (CharCandidate(runner_up, prob),))
    conf = 1.0
    for s in slots:
        conf *= s.prob
    return Evidence(text, conf, tuple(slots))


def match(pattern: str, evidence: Evidence, min_score: float = 0.1) -> Match | None:
    return match_pattern(normalise_pattern(pattern), evidence, max_diffs=2, min_score=min_score)


def test_exact_read_matches_exactly_with_its_confidence_as_score() -> None:
    found = match("ABC1234", confident("ABC1234"))
    assert found is not None
    assert found.kind == "exact"
    assert found.differences == ()
    assert found.score == pytest.approx(0.99**7, abs=1e-4)


def test_confident_one_character_variant_does_not_match() -> None:
    # Read as ABC1Z34 with 0.99 on the Z: the plate is not ABC1234, however alike Z and 2 are.
    assert match("ABC1234", confident("ABC1Z34")) is None


def test_torn_character_with_runner_up_matches_fuzzy_and_says_where() -> None:
    found = match("ABC1234", torn("ABC1Z34", 4, "2", 0.45))
    assert found is not None
    assert found.kind == "fuzzy"
    (diff,) = found.differences
    assert (diff.position, diff.read, diff.entry, diff.source) == (4, "Z", "2", "alternative")
    assert diff.prob == pytest.approx(0.45)
    assert 0.1 < found.score < 0.5


def test_confusable_character_in_an_uncertain_slot_matches_without_an_alternative() -> None:
    slots = [CharSlot(c, 0.98) for c in "ABC1234"]
    slots[3] = CharSlot("I", 0.4)  # read I, unsure, no runner-up given: 1 and I are confused
    evidence = Evidence("ABCI234", 0.3, tuple(slots))
    found = match("ABC1234", evidence)
    assert found is not None
    assert found.differences[0].source == "confusion"
    # The same slot reading a non-confusable letter gives no evidence for 1.
    slots[3] = CharSlot("K", 0.4)
    assert match("ABC1234", Evidence("ABCK234", 0.3, tuple(slots))) is None


def test_candidate_text_matches_fuzzy_via_candidate() -> None:
    evidence = Evidence(
        "AB1234",
        0.6,
        tuple(CharSlot(c, 0.93) for c in "AB1234"),
        (TextCandidate("AB1234", 0.6), TextCandidate("ABC1234", 0.3)),
    )
    found = match("ABC1234", evidence)
    assert found is not None
    assert (found.kind, found.via, found.score) == ("fuzzy", "candidate", 0.3)


def test_wildcards_match_partial_plates() -> None:
    for pattern, text in (("AB?12*", "ABX1299"), ("AB?12*", "ABX12"), ("*1234", "XYZ1234")):
        found = match(pattern, confident(text))
        assert found is not None, (pattern, text)
        assert found.kind == "exact", (pattern, text)
    assert match("AB?12*", confident("ABX3299")) is None


@pytest.mark.parametrize("bad", ["*", "A*", "AB?*", "AB+1234", "AB#1234", "ABC/123", "A*B*C*D*"])
def test_patterns_that_match_too_much_or_hold_odd_characters_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="plate"):
        normalise_pattern(bad)


def test_spaces_dashes_and_case_are_normalised() -> None:
    assert normalise_pattern("abc-12 34") == "ABC1234"


plates = st.text(alphabet=ALPHABET, min_size=4, max_size=8)


@settings(max_examples=200, deadline=None)
@given(plates, st.floats(min_value=0.05, max_value=1.0))
def test_a_plate_always_matches_itself_exactly(plate: str, prob: float) -> None:
    found = match_pattern(plate, confident(plate, prob), max_diffs=2, min_score=0.99)
    assert found is not None
    assert found.kind == "exact"


@settings(max_examples=200, deadline=None)
@given(plates, st.data())
def test_a_changed_character_never_matches_exactly(plate: str, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(plate) - 1))
    other = data.draw(st.sampled_from([c for c in ALPHABET if c != plate[pos]]))
    variant = plate[:pos] + other + plate[pos + 1 :]
    found = match_pattern(variant, confident(plate), max_diffs=2, min_score=0.0001)
    assert found is None or found.kind == "fuzzy"
    # And with a confident read it never alerts at the default threshold.
    assert match_pattern(variant, confident(plate), max_diffs=2, min_score=0.1) is None


def _entry(pattern: str) -> HotListEntry:
    return HotListEntry(pattern, pattern, "test", "high", None)


@st.composite
def evidences(draw: st.DrawFn) -> Evidence:
    text = draw(plates)
    slots = []
    for ch in text:
        prob = draw(st.floats(min_value=0.2, max_value=1.0))
        alts = draw(st.lists(st.sampled_from(ALPHABET), max_size=2, unique=True))
        slots.append(
            CharSlot(ch, prob, tuple(CharCandidate(a, (1 - prob) / 2) for a in alts if a != ch))
        )
    conf = 1.0
    for s in slots:
        conf *= s.prob
    return Evidence(text, conf, tuple(slots))


@settings(max_examples=150, deadline=None)
@given(evidences(), st.data())
def test_index_finds_exactly_what_a_scan_of_every_entry_finds(
    evidence: Evidence, data: st.DataObject
) -> None:
    # Entries near the read (edits of it) and far from it, as a real list would hold.
    entries = {evidence.text}
    for _ in range(data.draw(st.integers(0, 8))):
        text = list(evidence.text)
        for _ in range(data.draw(st.integers(1, 3))):
            text[data.draw(st.integers(0, len(text) - 1))] = data.draw(st.sampled_from(ALPHABET))
        entries.add("".join(text))
    entries |= set(data.draw(st.lists(plates, max_size=5)))
    hot = HotList("fleet", "v1", tuple(_entry(p) for p in sorted(entries)), "0" * 64, False)
    index = HotListIndex([hot])
    found = {
        h.entry.pattern: h.match for h in index.match(evidence, NOW, max_diffs=2, min_score=0.1)
    }
    scanned = {}
    for pattern in entries:
        m = match_pattern(pattern, evidence, max_diffs=2, min_score=0.1)
        if m is not None:
            scanned[pattern] = m
    assert found.keys() == scanned.keys()
    for pattern, m in found.items():
        assert (m.kind, m.score) == (scanned[pattern].kind, scanned[pattern].score)


def test_expired_entries_do_not_match() -> None:
    old = HotListEntry("ABC1234", "ABC1234", "x", "high", datetime(2026, 1, 1, tzinfo=UTC))
    hot = HotList("fleet", "v1", (old,), "0" * 64, False)
    assert HotListIndex([hot]).match(confident("ABC1234"), NOW, max_diffs=2, min_score=0.1) == []
