"""The constraints a text model's samples are held to, built from a run and its options: max-copy, pattern, words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chargen.errors import UsageError
from chargen.generation.copies import CopyMask, CorpusIndex, index_for_run, novelty
from chargen.generation.masks import CharMask
from chargen.generation.pattern import PatternMask

__all__ = ["Constraints", "constraints_for_run"]

PATTERN_END = "\n"  # where a text model may end a sample that matches: a line of text ends at a line break


@dataclass
class Constraints:
    """The masks to sample under, the stop strings they need (a pattern's end token) and the copy index."""

    masks: list[CharMask] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    index: CorpusIndex | None = None

    def novelty(self, text: str) -> dict[str, Any]:
        """``copies.novelty`` of one sample against the run's corpus (needs ``novelty=True`` or ``max_copy``)."""
        if self.index is None:
            raise UsageError("novelty needs the run's corpus: build the constraints with novelty=True",
                             params="novelty")
        return novelty(text, self.index)


def constraints_for_run(loaded: Any, *, length: int, prime: str = "", max_copy: int | None = None,
                        pattern: str | None = None, include: Sequence[str] = (), novelty: bool = False,
                        index: CorpusIndex | None = None) -> Constraints:
    """Check and build every constraint before anything is generated (a bad pattern is refused here).

    ``max_copy``: no span longer than this of a sample occurs in the corpus the run was given
    (``copies.CopyMask``); ``pattern`` and ``include``: every sample (prime included) matches the regex in
    full and contains each word (``pattern.PatternMask``), ending at a line break the model chooses once
    it matches, so the sample is cut there; ``novelty``: load the corpus index to report on the samples.
    ``index``: the run's corpus index already loaded (a server keeps one per model), else it is loaded here.
    """
    out = Constraints()
    wanted = [name for name, on in (("max_copy", max_copy is not None), ("novelty", novelty),
                                    ("pattern", pattern is not None), ("include", bool(include))) if on]
    if not wanted:
        return out
    if loaded.config.get("task") != "lm":
        verb = "are" if len(wanted) > 1 else "is"
        raise UsageError(f"{' and '.join(wanted)} {verb} for text models; this is a {loaded.config.get('task')!r} "
                         "model", params=tuple(wanted))
    # everything that can be checked is, before the index is built (seconds) and cached beside the model
    if max_copy is not None and max_copy < 1:
        raise UsageError(f"max_copy must be at least 1, got {max_copy}", params="max_copy")
    loaded.vocab.encode(prime, what="the prime")
    if pattern is not None or include:
        end = PATTERN_END if PATTERN_END in loaded.vocab else None
        out.masks.append(PatternMask(pattern, loaded.vocab, length, include=include, end=end, prime=prime))
        out.stops += [end] if end is not None else []
    if max_copy is not None or novelty:
        param = "max_copy" if max_copy is not None else "novelty"
        out.index = index or index_for_run(loaded.path, loaded.config, param=param)
    if max_copy is not None:
        out.masks.append(CopyMask(out.index, loaded.vocab, max_copy))
    return out
