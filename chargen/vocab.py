"""Character vocabularies: encode and decode text, saved as JSON (never pickled) in checkpoints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chargen.errors import VocabularyError


class Vocab:
    """Maps characters to ids: special tokens first (e.g. ``<pad>``, ``<eos>``), then characters."""

    def __init__(self, chars: Iterable[str], specials: Sequence[str] = ()) -> None:
        self.chars = list(chars)
        self.specials = list(specials)
        self.tokens = self.specials + self.chars
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary has repeated tokens")
        self.index = {tok: i for i, tok in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str, specials: Sequence[str] = ()) -> Vocab:
        """All characters of ``text`` in code-point order."""
        return cls(sorted(set(text)), specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self.chars)} chars, specials={self.specials})"

    def id(self, token: str) -> int:
        return self.index[token]

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str, *, what: str = "text") -> list[int]:
        """Ids of the characters of ``text``; a VocabularyError names any the model does not know."""
        if missing := self.unknown(text):
            shown = " ".join(repr(ch) for ch in missing[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise VocabularyError(
                f"{what} has {len(missing)} character(s) outside the model's vocabulary: {shown}{more}"
            )
        return [self.index[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def to_json(self) -> dict[str, Any]:
        return {"chars": self.chars, "specials": self.specials}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        return cls(data["chars"], data.get("specials", ()))
