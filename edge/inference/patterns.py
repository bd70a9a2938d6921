"""Plate format prior: known plate formats fix the recognizer's letter/digit confusions.

Where an agency knows its plate formats (Brazil: ``LLLNNNN`` and Mercosul ``LLLNLNN``), each
position of a read can be held to letters or digits, as OpenALPR's per-country postprocess
templates do. A pattern is made of ``L`` (a letter A-Z), ``N`` (a digit 0-9) and ``?`` (any
character), 2 to 10 long (``models.plate_patterns``).

A read is compared only with the patterns of its own length. A slot's candidates (the read
character and its alternatives) are that position's distribution; a pattern scores the product
over its positions of the share of that distribution in the allowed class (1 for ``?``). The
best pattern wins (the first listed on a tie). At each of its ``L`` and ``N`` positions the
most likely allowed candidate becomes the character, and the allowed candidates' probabilities
are renormalised over the allowed set to the mass the slot's candidates had (at most 1): a slot
whose candidates summed to 1 still does, and one that summed to less keeps its remainder (the
CTC blank, characters too unlikely to be listed), so the prior resolves letter/digit doubt
without making an unsure position certain. ``?`` positions are left as read. The confidence
is recomputed as the recognizer computes it, from the new character probabilities; the status
is the recognizer's.

A read is left exactly as it was when no pattern has its length, or when every pattern of its
length has a position where no candidate fits: the prior never drops a read and never puts in
a character the recognizer did not consider.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge.config import check_plate_pattern
from edge.inference.recognizer import read_confidence
from edge.types import CharCandidate, CharSlot, PlateStatus, Recognition

FloatArray = npt.NDArray[np.float64]
LETTER, DIGIT, ANY, OTHER = 0, 1, 2, 3
"""Class codes: a pattern position is LETTER, DIGIT or ANY; a candidate LETTER, DIGIT or OTHER."""
_POSITION_CLASS = {"L": LETTER, "N": DIGIT, "?": ANY}
_LETTERS = frozenset(string.ascii_uppercase)
_DIGITS = frozenset(string.digits)


class PlatePatterns:
    """An agency's plate formats, applied to each single-frame read."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(check_plate_pattern(p) for p in patterns)
        by_length: dict[int, list[str]] = {}
        for pattern in dict.fromkeys(self.patterns):
            by_length.setdefault(len(pattern), []).append(pattern)
        # Per length, one row of position classes per pattern, in the order listed.
        self._classes: dict[int, npt.NDArray[np.intp]] = {
            length: np.array([[_POSITION_CLASS[c] for c in p] for p in group], dtype=np.intp)
            for length, group in by_length.items()
        }

    def apply(self, read: Recognition) -> Recognition:
        """The read held to its best-fitting pattern; the read itself when none fits."""
        classes = self._classes.get(len(read.chars))
        if classes is None or read.status is PlateStatus.NONE or len(read.text) != len(read.chars):
            return read
        candidates = [
            ((s.char, s.prob), *((a.char, a.prob) for a in s.alternatives)) for s in read.chars
        ]
        positions = len(candidates)
        width = max(len(c) for c in candidates)
        probs = np.zeros((positions, width), dtype=np.float64)
        kinds = np.full((positions, width), OTHER, dtype=np.intp)
        for row, slot in enumerate(candidates):
            probs[row, : len(slot)] = [max(p, 0.0) for _, p in slot]
            kinds[row, : len(slot)] = [_char_class(c) for c, _ in slot]
        total = probs.sum(axis=1)
        share = np.ones((positions, 3), dtype=np.float64)  # column ANY stays 1
        for kind in (LETTER, DIGIT):
            share[:, kind] = np.where(kinds == kind, probs, 0.0).sum(axis=1) / np.maximum(
                total, 1e-12
            )
        scores = share[np.arange(positions), classes].prod(axis=1)
        best = int(np.argmax(scores))
        if scores[best] <= 0.0:
            return read
        chars = tuple(
            slot
            if wanted == ANY
            else held_to(candidates[i], probs[i], kinds[i] == wanted, min(total[i], 1.0))
            for i, (slot, wanted) in enumerate(zip(read.chars, classes[best], strict=True))
        )
        text = "".join(c.char for c in chars)
        return Recognition(text, read_confidence(chars), chars, read.status)


def _char_class(char: str) -> int:
    if char in _LETTERS:
        return LETTER
    return DIGIT if char in _DIGITS else OTHER


def held_to(
    candidates: Sequence[tuple[str, float]],
    probs: FloatArray,
    allowed: npt.NDArray[np.bool_],
    mass: float,
) -> CharSlot:
    """One slot's allowed candidates, most likely first, renormalised to ``mass``."""
    kept = np.flatnonzero(allowed)
    kept = kept[kept < len(candidates)]
    shares = probs[kept] / probs[kept].sum() * mass
    order = np.argsort(-shares, kind="stable")
    ranked = [CharCandidate(candidates[kept[i]][0], float(shares[i])) for i in order]
    return CharSlot(ranked[0].char, ranked[0].prob, tuple(ranked[1:]))
