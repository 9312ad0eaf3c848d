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
        """Ids of the characters of ``text``; a VocabularyError names any the model does not know (and the
        character to type instead, when the model knows a typographic twin of it)."""
        if missing := self.unknown(text):
            shown = " ".join(repr(ch) for ch in missing[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            instead = [f"{' or '.join(twins)} for {ch!r}" for ch in missing
                       if (twins := [t for t in TWINS.get(ch, ()) if t in self.index])]
            hint = f"; this model writes {', '.join(instead)}" if instead else ""
            raise VocabularyError(
                f"{what} has {len(missing)} character(s) outside the model's vocabulary: {shown}{more}{hint}"
            )
        return [self.index[ch] for ch in text]

    def typed(self, text: str) -> str:
        """``text`` with the ASCII stand-ins a person types (' " -- ...) written as this vocabulary's own
        characters (’ “ ” — …) where it lacks the ASCII ones; anything else is left as it is."""
        out = text
        if "..." in out and "." not in self.index and "…" in self.index:
            out = out.replace("...", "…")
        if "--" in out and "-" not in self.index:
            dash = next((d for d in ("—", "–") if d in self.index), None)
            out = out.replace("--", dash) if dash else out
        for ascii_char, (opening, closing) in (("'", ("‘", "’")), ('"', ("“", "”"))):
            if ascii_char in out and ascii_char not in self.index:
                out = "".join(_quote(out, i, opening, closing, self.index) if ch == ascii_char else ch
                              for i, ch in enumerate(out))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def to_json(self) -> dict[str, Any]:
        return {"chars": self.chars, "specials": self.specials}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        return cls(data["chars"], data.get("specials", ()))


# What a person types for a typographic character, and the characters it may stand for.
TWINS: dict[str, tuple[str, ...]] = {"'": ("’", "‘"), '"': ("“", "”"), "-": ("–", "—"), "`": ("‘",)}


def _quote(text: str, i: int, opening: str, closing: str, index: dict[str, int]) -> str:
    """The typographic quote for the ASCII one at ``text[i]``: opening after a space or at the start, else
    closing (an apostrophe, as in "king's", is the closing one); the ASCII one if the vocabulary has neither."""
    before = text[i - 1] if i else " "
    wanted = opening if (before.isspace() or before in "([{") else closing
    return wanted if wanted in index else (closing if closing in index else text[i])
