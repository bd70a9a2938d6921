"""Plate-text context prior: a round letter between two digits is the digit zero.

Plates write characters in runs of letters and runs of digits, and the recognizer's hardest
confusion is the round one: O, Q and 0 differ by a few pixels (and not at all in some
states' fonts). In the 4,064 labelled US and Brazilian plates under ``../shared/datasets``
(``openalpr-us-plate-crops``, ``openalpr-br-plate-crops``), 7,667 characters stand between two
digits; 44 of them are letters, and none is O or Q. No format we know of puts one there:
US serials keep letters in blocks, Mercosul's letter between digits is A-J, European
district and series letters sit next to letters or at a separator. So where the recognizer
reads O or Q between two digits and also considered a digit there, the digit wins.

The slot keeps its digit candidates (the most likely one first), renormalised to the mass
its candidates had, as the plate-format prior does for an ``N`` position; the read's
confidence is recomputed from the new character probabilities. A read is left as it was
when no slot qualifies or the recognizer saw no digit in a qualifying slot: the prior never
adds a character the recognizer did not consider. Other letters are left alone (B, D, I and
more do stand between digits on real plates: Mercosul's fifth character is A-J, as in
``ABC1D23``; US ``4W5825``), and so is a zero between letters (vanity plates spell words with
it: ``CUST0M``).
"""

from __future__ import annotations

import numpy as np

from edge.inference.patterns import held_to
from edge.inference.recognizer import read_confidence
from edge.types import CharSlot, Recognition

ROUND_LETTERS = frozenset("OQ")
"""Letters never seen between two digits on a plate, and confused with 0."""


def round_letters_between_digits(read: Recognition) -> Recognition:
    """The read with each O or Q that stands between two digits read as a digit."""
    chars = read.chars
    if len(chars) < 3 or len(read.text) != len(chars):
        return read
    fixed = list(chars)
    changed = False
    for i in range(1, len(chars) - 1):
        slot = chars[i]
        if slot.char not in ROUND_LETTERS:
            continue
        if not (chars[i - 1].char.isdigit() and chars[i + 1].char.isdigit()):
            continue
        digit_slot = _as_digit(slot)
        if digit_slot is not None:
            fixed[i] = digit_slot
            changed = True
    if not changed:
        return read
    slots = tuple(fixed)
    return Recognition("".join(c.char for c in slots), read_confidence(slots), slots, read.status)


def _as_digit(slot: CharSlot) -> CharSlot | None:
    """The slot's digit candidates, most likely first, holding all of the slot's mass (as the
    plate-format prior holds an ``N`` position); None when the recognizer saw no digit."""
    candidates = [(slot.char, slot.prob), *((a.char, a.prob) for a in slot.alternatives)]
    probs = np.array([max(p, 0.0) for _, p in candidates], dtype=np.float64)
    digits = np.array([c.isdigit() for c, _ in candidates]) & (probs > 0.0)
    if not digits.any():
        return None
    return held_to(candidates, probs, digits, min(float(probs.sum()), 1.0))
