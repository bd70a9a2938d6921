"""Per-character voting over the frames of one vehicle pass.

Each frame's read gives, per character, a probability and runner-up characters. Reads of the
most common length vote position by position with those probabilities as soft votes; this
fixes single-frame confusions (O/0, B/8) that one good frame would otherwise lock in. Where
the agency set plate formats, the voted text is held to them too: frames that fit different
formats of one length can otherwise vote a text that fits none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

from edge.inference.patterns import PlatePatterns
from edge.types import CharCandidate, CharSlot, PlateStatus, Recognition, TextCandidate

PARTIAL_CHAR_SHARE = 0.4
"""A voted character with less vote share than this makes the plate partial."""
PAPER_SHARE = 0.34


@dataclass(frozen=True, slots=True)
class VoteResult:
    text: str
    confidence: float
    chars: tuple[CharSlot, ...]
    candidates: tuple[TextCandidate, ...]
    status: PlateStatus


def _expand_collapsed(reads: Sequence[Recognition]) -> list[Recognition]:
    """Undo CTC's typical slip: a doubled character ("88") read as one ("8").

    When another frame of the pass read the same text with the double, this frame's read is
    taken to mean that text, its slot for the doubled character counting twice.
    """
    texts = {r.text for r in reads}
    out: list[Recognition] = []
    for read in reads:
        expanded = read
        for longer in texts:
            if len(longer) != len(read.text) + 1:
                continue
            for i in range(len(longer) - 1):
                if longer[i] == longer[i + 1] and longer[:i] + longer[i + 1 :] == read.text:
                    chars = read.chars[: i + 1] + read.chars[i:]
                    expanded = Recognition(longer, read.confidence, chars, read.status)
                    break
            if expanded is not read:
                break
        out.append(expanded)
    return out


def _chosen_length(reads: Sequence[Recognition]) -> int:
    weight: dict[int, float] = defaultdict(float)
    for read in reads:
        weight[len(read.text)] += read.confidence + 1e-3
    return max(weight.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _position_votes(reads: Sequence[Recognition], length: int) -> list[dict[str, float]]:
    votes: list[dict[str, float]] = [defaultdict(float) for _ in range(length)]
    for read in reads:
        if len(read.chars) != length:
            continue
        for pos, slot in enumerate(read.chars):
            votes[pos][slot.char] += slot.prob
            for alt in slot.alternatives:
                votes[pos][alt.char] += alt.prob
    return votes


def _candidates(
    slots: Sequence[CharSlot], reads: Sequence[Recognition], limit: int
) -> tuple[TextCandidate, ...]:
    """The voted text, its likeliest variants, and differently-sized texts seen in the pass."""
    options: list[list[tuple[str, float]]] = []
    # Branch only on the two least certain positions: candidates exist for the hot-list
    # matcher and the backend, and more branches only add noise.
    uncertain = sorted(range(len(slots)), key=lambda i: slots[i].prob)[:2]
    for i, slot in enumerate(slots):
        opts = [(slot.char, slot.prob)]
        if i in uncertain:
            opts += [(a.char, a.prob) for a in slot.alternatives[:2] if a.prob > 0.02]
        options.append(opts)
    scored: dict[str, float] = {}
    for combo in product(*options):
        text = "".join(c for c, _ in combo)
        score = 1.0
        for _, p in combo:
            score *= p
        scored[text] = max(scored.get(text, 0.0), score)
    for read in reads:
        if read.text and read.text not in scored:
            scored[read.text] = read.confidence * 0.5
    ranked = sorted(scored.items(), key=lambda kv: -kv[1])[:limit]
    return tuple(TextCandidate(text=t, confidence=round(c, 4)) for t, c in ranked)


def _status(reads: Sequence[Recognition], slots: Sequence[CharSlot]) -> PlateStatus:
    if not slots:
        return PlateStatus.NONE
    paper = sum(1 for r in reads if r.status is PlateStatus.PAPER)
    if paper / len(reads) >= PAPER_SHARE:
        return PlateStatus.PAPER
    partial = sum(1 for r in reads if r.status is PlateStatus.PARTIAL)
    if partial / len(reads) > 0.5 or len(slots) < 2:
        return PlateStatus.PARTIAL
    if min(s.prob for s in slots) < PARTIAL_CHAR_SHARE:
        return PlateStatus.PARTIAL
    return PlateStatus.FULL


def _rounded(candidate: CharCandidate) -> CharCandidate:
    return CharCandidate(candidate.char, round(candidate.prob, 4))


def vote(
    reads: Sequence[Recognition],
    *,
    max_candidates: int = 5,
    patterns: PlatePatterns | None = None,
) -> VoteResult:
    """Combine the reads of one pass into one text with per-character confidence, held to
    ``patterns`` (the agency's plate formats) when given."""
    usable = _expand_collapsed([r for r in reads if r.text])
    if not usable:
        return VoteResult("", 0.0, (), (), PlateStatus.NONE)
    length = _chosen_length(usable)
    votes = _position_votes(usable, length)
    # Shares are per voting read, so one unsure frame stays unsure instead of becoming 100%.
    total = float(sum(1 for r in usable if len(r.chars) == length)) or 1.0
    slots: list[CharSlot] = []
    for position in votes:
        ranked = sorted(position.items(), key=lambda kv: -kv[1])
        best_char, best = ranked[0]
        alts = tuple(CharCandidate(c, round(min(v / total, 1.0), 4)) for c, v in ranked[1:4])
        slots.append(CharSlot(best_char, round(min(best / total, 1.0), 4), alts))
    if patterns is not None:
        voted = "".join(s.char for s in slots)
        held = patterns.apply(Recognition(voted, 1.0, tuple(slots), PlateStatus.FULL))
        slots = [
            CharSlot(s.char, round(s.prob, 4), tuple(_rounded(a) for a in s.alternatives))
            for s in held.chars
        ]
    text = "".join(s.char for s in slots)
    confidence = 1.0
    for slot in slots:
        confidence *= slot.prob
    candidates = _candidates(slots, usable, max_candidates)
    return VoteResult(
        text=text,
        confidence=round(confidence, 4),
        chars=tuple(slots),
        candidates=candidates,
        status=_status(usable, slots),
    )
