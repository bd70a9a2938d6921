"""Constructed recognizer reads for the tests of what happens after the recognizer (plate
formats, the context prior, views, voting): one read from per-position (char, prob,
alternatives)."""

from __future__ import annotations

import math

from edge.types import CharCandidate, CharSlot, PlateStatus, Recognition

Slot = tuple[str, float, dict[str, float]]
"""A position: the read character, its probability, {alternative: probability}."""


def make_read(*slots: Slot, status: PlateStatus = PlateStatus.FULL) -> Recognition:
    """A read from (char, prob, {alternative: prob}) per position; confidence as the
    recognizer computes it (the product of the character probabilities)."""
    chars = tuple(
        CharSlot(c, p, tuple(CharCandidate(a, q) for a, q in alts.items())) for c, p, alts in slots
    )
    text = "".join(s.char for s in chars)
    return Recognition(text, math.prod(s.prob for s in chars), chars, status)


def sure(text: str) -> list[Slot]:
    """Positions read with certainty and no alternatives."""
    return [(c, 1.0, {}) for c in text]
