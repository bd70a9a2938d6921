"""Hot-list matching that understands OCR: exact, near (confusable characters backed by the
recognizer's own evidence) and wildcard patterns.

A read is compared with a hot-list pattern position by position. Each position's *evidence*
for a character is what the recognizer said about it: the slot's probability when it read
that character, the probability of that character among the slot's alternatives, or, for a
character OCR commonly confuses with the one read (O/0/D/Q, I/1/L/T, B/8, ...), a share of
the probability the slot did *not* give to its own character. The match score is the product
of the evidence over the pattern's literal positions, a number in 0..1 that reads as "how
likely is it that this plate says that".

* **exact**: the voted text fits the pattern; the score is the product of its slot
  probabilities there. An exact match always alerts.
* **fuzzy**: at most ``max_diffs`` positions differ and each differing character has evidence,
  or a lower-ranked candidate text of the pass fits the pattern. It alerts only when its score
  is at least ``min_score``: a plate read confidently as ``ABC1Z34`` does not alert on
  ``ABC1234``; one whose fifth character was torn between Z and 2 does.

Pattern syntax (``docs/events.md``): letters and digits match themselves, ``?`` any one
character, ``*`` any run of characters (zero or more). Spaces and ``-`` in an entry are
ignored and letters are upper-cased.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import Literal

from edge.types import CharSlot, Recognition, TextCandidate, VehiclePass

CONFUSABLE_GROUPS = (
    "O0DQU",
    "I1LTJ",
    "B8",
    "S5",
    "Z2",
    "G6C",
    "A4",
    "EF",
    "MNH",
    "KX",
    "PR",
    "VY",
)
"""Characters a plate recognizer mistakes for one another (each string is one group)."""
CONFUSION_PRIOR = 0.5
"""Share of a slot's doubt (1 - prob) credited to a confusable character with no probability
of its own among the alternatives."""
WILDCARD_ONE = "?"
WILDCARD_ANY = "*"
MAX_STARS = 2
MIN_LITERALS = 4
"""A pattern needs this many literal characters: ``A*`` would alert on a tenth of all cars."""
PLATE_CHARS = re.compile(r"^[A-Z0-9?*]+$")

_CONFUSABLE: dict[str, frozenset[str]] = {}
for _group in CONFUSABLE_GROUPS:
    for _ch in _group:
        _CONFUSABLE[_ch] = _CONFUSABLE.get(_ch, frozenset()) | frozenset(_group) - {_ch}

MatchKind = Literal["exact", "fuzzy"]
EvidenceSource = Literal["alternative", "confusion"]


def normalise_pattern(raw: str) -> str:
    """Upper-case, spaces and dashes dropped; raises ValueError for anything unusable."""
    text = raw.replace(" ", "").replace("-", "").upper()
    if not text or not PLATE_CHARS.match(text):
        raise ValueError(f"plate {raw!r}: only letters, digits, '?' and '*' are allowed")
    literals = sum(1 for ch in text if ch not in (WILDCARD_ONE, WILDCARD_ANY))
    if literals < MIN_LITERALS:
        raise ValueError(
            f"plate {raw!r}: needs at least {MIN_LITERALS} letters or digits "
            "(a pattern this open would match too many vehicles)"
        )
    if text.count(WILDCARD_ANY) > MAX_STARS:
        raise ValueError(f"plate {raw!r}: at most {MAX_STARS} '*' in one pattern")
    return text


def is_wildcard(pattern: str) -> bool:
    return WILDCARD_ONE in pattern or WILDCARD_ANY in pattern


def pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." if ch == WILDCARD_ONE else ".*" if ch == WILDCARD_ANY else ch for ch in pattern)
    return re.compile("^" + "".join(parts) + "$")


def confusable(a: str, b: str) -> bool:
    return b in _CONFUSABLE.get(a, frozenset())


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the recognizer said about one pass (or one frame): the matcher's input."""

    text: str
    confidence: float
    chars: tuple[CharSlot, ...]
    candidates: tuple[TextCandidate, ...] = ()

    @classmethod
    def of_pass(cls, vehicle_pass: VehiclePass) -> Evidence:
        return cls(
            vehicle_pass.text,
            vehicle_pass.confidence,
            _slots(vehicle_pass.text, vehicle_pass.confidence, vehicle_pass.chars),
            vehicle_pass.candidates,
        )

    @classmethod
    def of_recognition(cls, recognition: Recognition) -> Evidence:
        return cls(
            recognition.text,
            recognition.confidence,
            _slots(recognition.text, recognition.confidence, recognition.chars),
        )


def _slots(text: str, confidence: float, chars: Sequence[CharSlot]) -> tuple[CharSlot, ...]:
    """The per-character slots, made up from the text when the read came without them."""
    if len(chars) == len(text) and "".join(s.char for s in chars) == text:
        return tuple(chars)
    per_char = max(0.0, min(1.0, confidence)) ** (1.0 / len(text)) if text else 0.0
    return tuple(CharSlot(ch, per_char) for ch in text)


@dataclass(frozen=True, slots=True)
class Difference:
    """One position where the read and the hot-list entry disagree."""

    position: int
    read: str
    entry: str
    prob: float
    """The recognizer's evidence for the entry's character at this position."""
    source: EvidenceSource


@dataclass(frozen=True, slots=True)
class Match:
    kind: MatchKind
    score: float
    matched_text: str
    """The text that fitted the pattern: the voted text, a variant of it, or a candidate."""
    differences: tuple[Difference, ...]
    via: Literal["text", "candidate"]


def char_evidence(slot: CharSlot, char: str) -> tuple[float, EvidenceSource | None]:
    """The slot's evidence for ``char`` (not the slot's own character)."""
    alt = max((a.prob for a in slot.alternatives if a.char == char), default=0.0)
    prior = CONFUSION_PRIOR * max(0.0, 1.0 - slot.prob) if confusable(slot.char, char) else 0.0
    if alt <= 0.0 and prior <= 0.0:
        return 0.0, None
    return (alt, "alternative") if alt >= prior else (prior, "confusion")


def score_fixed(pattern: str, slots: Sequence[CharSlot], max_diffs: int) -> Match | None:
    """Compare a pattern without ``*`` with the slots, position by position."""
    if len(pattern) != len(slots):
        return None
    score = 1.0
    diffs: list[Difference] = []
    text = []
    for pos, (want, slot) in enumerate(zip(pattern, slots, strict=True)):
        if want == WILDCARD_ONE:
            text.append(slot.char)
            continue
        text.append(want)
        if want == slot.char:
            score *= slot.prob
            continue
        prob, source = char_evidence(slot, want)
        if source is None or len(diffs) == max_diffs:
            return None
        diffs.append(Difference(pos, slot.char, want, round(prob, 4), source))
        score *= prob
    kind: MatchKind = "fuzzy" if diffs else "exact"
    return Match(kind, _clamp(score), "".join(text), tuple(diffs), "text")


def _fixed_forms(pattern: str, length: int) -> Iterable[str]:
    """``pattern`` with each ``*`` replaced by runs of ``?`` so that it is ``length`` long."""
    stars = pattern.count(WILDCARD_ANY)
    free = length - (len(pattern) - stars)
    if stars == 0:
        if free == 0:
            yield pattern
        return
    if free < 0:
        return
    pieces = pattern.split(WILDCARD_ANY)
    for split in _compositions(free, stars):
        out = pieces[0]
        for run, piece in zip(split, pieces[1:], strict=True):
            out += WILDCARD_ONE * run + piece
        yield out


def _compositions(total: int, parts: int) -> Iterable[tuple[int, ...]]:
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def match_pattern(
    pattern: str, evidence: Evidence, *, max_diffs: int, min_score: float
) -> Match | None:
    """The best match of one normalised pattern with a read, or None when it does not alert."""
    best: Match | None = None
    for form in _fixed_forms(pattern, len(evidence.chars)):
        found = score_fixed(form, evidence.chars, max_diffs)
        if found is not None and _better(found, best):
            best = found
    if best is not None and best.kind == "exact":
        return best
    regex = pattern_regex(pattern)
    for candidate in evidence.candidates:
        if candidate.text == evidence.text or not regex.match(candidate.text):
            continue
        found = Match("fuzzy", _clamp(candidate.confidence), candidate.text, (), "candidate")
        if _better(found, best):
            best = found
    if best is None or best.score < min_score:
        return None
    return best


def _better(new: Match, old: Match | None) -> bool:
    if old is None:
        return True
    return (new.kind == "exact", new.score) > (old.kind == "exact", old.score)


def variants(evidence: Evidence, max_diffs: int) -> Iterable[tuple[str, Match]]:
    """Every text the evidence supports with at most ``max_diffs`` changed characters, with
    its match: how a large hot list is searched without looking at every entry."""
    slots = evidence.chars
    yield (
        evidence.text,
        score_fixed(evidence.text, slots, 0) or Match("exact", 0.0, evidence.text, (), "text"),
    )
    options: list[list[str]] = []
    for slot in slots:
        near = {a.char for a in slot.alternatives} | _CONFUSABLE.get(slot.char, frozenset())
        options.append(sorted(c for c in near if c != slot.char))
    for count in range(1, max_diffs + 1):
        for positions in combinations(range(len(slots)), count):
            for chars in product(*(options[p] for p in positions)):
                text = list(evidence.text)
                for p, c in zip(positions, chars, strict=True):
                    text[p] = c
                joined = "".join(text)
                found = score_fixed(joined, slots, max_diffs)
                if found is not None:
                    yield joined, found


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, float(value))), 4)
