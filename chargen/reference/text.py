"""The 27-symbol alphabet of the classic exercise: a text reduced to the letters a-z and single spaces."""

from __future__ import annotations

import re
import unicodedata

SYMBOLS = " abcdefghijklmnopqrstuvwxyz"  # id = position: space is 0, 'a' is 1 ... (code-point order, as Vocab.from_text)

# Letters that NFKD leaves whole (ligatures and letters of their own, not letters with marks)
_LETTERS = str.maketrans({"æ": "ae", "œ": "oe", "ø": "o", "ð": "d", "đ": "d", "þ": "th", "ł": "l", "ı": "i", "ĸ": "k"})
_NOT_A_TO_Z = re.compile(r"[^a-z]+")

REDUCTION_RULE = (
    "NFKD (accents split from their letters, compatibility forms such as 'ﬁ' spelt out), casefold "
    "(so 'ß' -> 'ss'), the letters NFKD keeps whole spelt in ASCII ('æ' -> 'ae', 'œ' -> 'oe', 'ø' -> 'o', "
    "'þ' -> 'th', 'ð'/'đ' -> 'd', 'ł' -> 'l', 'ı' -> 'i'), combining marks dropped; then every run of "
    "characters outside a-z (digits, punctuation, apostrophes, line breaks, other scripts) becomes one "
    "space, and spaces at the two ends go"
)


def reduce_text(text: str) -> str:
    """``text`` over the 27 symbols ``SYMBOLS``, by ``REDUCTION_RULE``.

    "Æsop’s fables, 2nd ed." -> "aesop s fables nd ed": apostrophes split words, as in the exercise.
    """
    text = unicodedata.normalize("NFKD", text).casefold().translate(_LETTERS)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _NOT_A_TO_Z.sub(" ", text).strip(" ")


def encode(text: str) -> list[int]:
    """Ids of a reduced text's symbols; a character outside ``SYMBOLS`` is a ValueError."""
    index = {ch: i for i, ch in enumerate(SYMBOLS)}
    try:
        return [index[ch] for ch in text]
    except KeyError as e:
        raise ValueError(f"{e.args[0]!r} is not one of the 27 symbols; reduce the text first") from None
