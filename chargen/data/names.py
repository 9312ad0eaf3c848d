"""Surnames by language: ASCII folding, deduplication, a stratified split persisted in ``corpora/names_split.json``.

Data (the ``names`` corpus, 18 ``<Language>.txt`` files, 20,074 lines):

- **Folding**, exactly as the PyTorch tutorial: Unicode NFD, combining marks dropped, then only
  ASCII letters and `` .,;'-`` kept; surrounding spaces stripped. ``Müller`` -> ``Muller``,
  ``Lu:`` -> ``Lu``, ``Rafaj1`` -> ``Rafaj``. Lines that keep no letter are dropped.
- **Deduplication** within a language, after folding (Arabic: 2,000 lines, 108 names).
- **Names listed under several languages** (480 after folding, e.g. ``Smith``: English and
  Scottish) are one item whose label is the *set* of its languages. The split is made over
  distinct names, so every copy of such a name lies in the same split: no test name occurs in
  training under any language. A prediction is correct when it is any of the name's languages
  (the data gives no ground for preferring one of them), and the classifier is trained for
  exactly that: its loss is ``-log p(any of the name's languages)``. The name generator learns
  the name under each of its languages. Metrics on the unambiguous test names alone are
  reported beside, so nothing hides behind the rule.
- **Split**: stratified, 70/15/15 (train/val/test) as in the deduplicated protocol of *NLP with
  PyTorch*. A name's stratum is its rarest language (fewest distinct names), so the small
  languages get their share of shared names. Within a stratum the sorted names are shuffled by
  ``random.Random("<seed>:<stratum>")`` (string seeds hash with SHA-512: the same on every
  platform and Python version) and cut. The split is written to ``corpora/names_split.json``
  and checked against the data on every load; ``python -m chargen.data.names --write``
  regenerates it, and a test proves that regeneration gives the committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargen import paths
from chargen.data.corpora import ProgressFn, load_names_raw
from chargen.errors import CorpusError

FOLD_ALPHABET = string.ascii_letters + " .,;'-"
_KEEP = frozenset(FOLD_ALPHABET)
_LETTERS = frozenset(string.ascii_letters)
SPLITS = ("train", "val", "test")
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_SEED = 1337
SPLIT_FILE = "names_split.json"


def fold(name: str) -> str:
    """ASCII folding as the PyTorch tutorial: NFD, drop combining marks, keep letters and `` .,;'-``."""
    kept = (c for c in unicodedata.normalize("NFD", name) if unicodedata.category(c) != "Mn" and c in _KEEP)
    return "".join(kept).strip()


# Letters NFD does not decompose, so ``fold`` drops them (``Małecki`` -> ``Maecki``). ``fold_input``
# spells them as they are usually written in ASCII; the tutorial corpus keeps ``fold`` (its split's identity).
LETTER_FOLDS = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ẞ": "SS", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae",
                              "œ": "oe", "Œ": "Oe", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th",
                              "ı": "i"})
# German umlauts as German writes them without the dots (``Müller`` -> ``Mueller``): a spelling real input has
UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def fold_input(name: str) -> str:
    """``fold`` after spelling the letters NFD cannot decompose (``ł ß ø æ œ đ ð þ ı``) in ASCII:
    how a user's input and the Faker lists are folded (``Małecki`` -> ``Malecki``, ``Đặng`` -> ``Dang``)."""
    return fold(name.translate(LETTER_FOLDS))


def typed_case(name: str) -> str:
    """A name typed all in lower or all in upper case, written as the lists write names (``smith``,
    ``SMITH`` -> ``Smith``; ``o'brien`` -> ``O'Brien``); any name with mixed case is left as typed."""
    return name.title() if name.islower() or name.isupper() else name


def spellings(raw: str, languages: tuple[str, ...]) -> set[str]:
    """Other ASCII spellings of a raw name than its fold: the German umlaut spelling for a German name."""
    out = {fold_input(raw)}
    if "German" in languages:
        out.add(fold_input(raw.translate(UMLAUTS)))
    return {s for s in out if has_letter(s)}


def has_letter(text: str) -> bool:
    return any(c in _LETTERS for c in text)


def label_sets(raw: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Folded, deduplicated names -> the sorted languages each is listed under."""
    langs: dict[str, set[str]] = {}
    for language, lines in raw.items():
        for line in lines:
            name = fold(line)
            if has_letter(name):
                langs.setdefault(name, set()).add(language)
    return {name: tuple(sorted(ls)) for name, ls in sorted(langs.items())}


def data_digest(labels: dict[str, tuple[str, ...]]) -> str:
    """sha256 of the folded data (name and languages per line): the identity a split belongs to."""
    text = "".join(f"{name}\t{','.join(ls)}\n" for name, ls in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def make_split(
    labels: dict[str, tuple[str, ...]], seed: int = SPLIT_SEED, fractions: dict[str, float] | None = None
) -> dict[str, list[str]]:
    """Stratified split of the distinct names (see the module docstring): ``{split: sorted names}``."""
    fractions = fractions or FRACTIONS
    sizes = Counter(language for ls in labels.values() for language in ls)
    strata: dict[str, list[str]] = {}
    for name, ls in labels.items():
        rarest = min(ls, key=lambda language: (sizes[language], language))
        strata.setdefault(rarest, []).append(name)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for key in sorted(strata):
        names = sorted(strata[key])
        random.Random(f"{seed}:{key}").shuffle(names)
        n = len(names)
        n_test = max(1, round(n * fractions["test"])) if n >= 3 else 0
        n_val = max(1, round(n * fractions["val"])) if n >= 3 else 0
        out["test"] += names[:n_test]
        out["val"] += names[n_test : n_test + n_val]
        out["train"] += names[n_test + n_val :]
    return {s: sorted(names) for s, names in out.items()}


def split_path() -> Path:
    return paths.PROJECT_ROOT / "corpora" / SPLIT_FILE


def split_document(labels: dict[str, tuple[str, ...]], seed: int = SPLIT_SEED) -> dict[str, Any]:
    """The JSON persisted for a split: how it was made, what data it belongs to, sizes, the names."""
    split = make_split(labels, seed)
    return {
        "about": "Stratified train/val/test split of the folded, deduplicated names corpus; "
        "see chargen/data/names.py. Regenerate with: python -m chargen.data.names --write",
        "seed": seed,
        "fractions": FRACTIONS,
        "data_sha256": data_digest(labels),
        "sizes": {s: len(split[s]) for s in SPLITS},
        "splits": split,
    }


def write_split(labels: dict[str, tuple[str, ...]], path: Path | None = None, seed: int = SPLIT_SEED) -> Path:
    path = path or split_path()
    text = json.dumps(split_document(labels, seed), indent=1) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class NamesData:
    """The folded names, their language sets, and the split; ``languages`` fixes the class order."""

    languages: list[str]
    labels: dict[str, tuple[str, ...]]
    splits: dict[str, list[str]]
    digest: str
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {language: i for i, language in enumerate(self.languages)}

    def pairs(self, split: str) -> list[tuple[str, int]]:
        """(name, language id) for every language of every name in ``split``."""
        return [(name, self.index[lang]) for name in self.splits[split] for lang in self.labels[name]]

    def targets(self, split: str) -> list[frozenset[int]]:
        """The set of language ids of each name of ``split``, in ``splits[split]`` order."""
        return [frozenset(self.index[lang] for lang in self.labels[name]) for name in self.splits[split]]

    def sizes(self) -> dict[str, Any]:
        """Distinct names per split, and (name, language) pairs per language and split."""
        per_language = {lang: {s: 0 for s in SPLITS} for lang in self.languages}
        for s in SPLITS:
            for name in self.splits[s]:
                for lang in self.labels[name]:
                    per_language[lang][s] += 1
        ambiguous = {s: sum(len(self.labels[n]) > 1 for n in self.splits[s]) for s in SPLITS}
        return {"names": {s: len(self.splits[s]) for s in SPLITS}, "ambiguous": ambiguous,
                "per_language": per_language}


def load_names(
    *, progress: ProgressFn | None = None, root: Path | None = None, split_file: Path | None = None
) -> NamesData:
    """The names data with its persisted split (checked against the data), or, for ``root``
    (a folder of ``<Language>.txt`` files), a split computed from the seed."""
    raw = load_names_raw(progress=progress, root=root)
    labels = label_sets(raw)
    digest = data_digest(labels)
    languages = sorted(raw)
    if root is not None and split_file is None:
        return NamesData(languages, labels, make_split(labels), digest)
    path = split_file or split_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NamesData(languages, labels, make_split(labels), digest)
    except (OSError, ValueError) as e:
        raise CorpusError(f"{path}: unreadable split file ({e})") from None
    splits = doc.get("splits", {})
    listed = [n for s in SPLITS for n in splits.get(s, [])]
    if doc.get("data_sha256") != digest or sorted(listed) != sorted(labels):
        raise CorpusError(
            f"{path} is not a split of this names data; regenerate it with `python -m chargen.data.names --write`"
        )
    return NamesData(languages, labels, {s: list(splits[s]) for s in SPLITS}, digest)


def main(argv: list[str] | None = None) -> None:
    """Print the split's sizes; ``--write`` regenerates ``corpora/names_split.json`` from the seed."""
    parser = argparse.ArgumentParser(prog="python -m chargen.data.names", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="regenerate the persisted split")
    args = parser.parse_args(argv)
    if args.write:
        print(f"wrote {write_split(label_sets(load_names_raw()))}")
    data = load_names()
    sizes = data.sizes()
    print("split   names  ambiguous")
    for s in SPLITS:
        print(f"{s:<6} {sizes['names'][s]:>6} {sizes['ambiguous'][s]:>10}")
    print(f"\n{'language':<12}" + "".join(f"{s:>7}" for s in SPLITS))
    for lang, row in sizes["per_language"].items():
        print(f"{lang:<12}" + "".join(f"{row[s]:>7}" for s in SPLITS))


if __name__ == "__main__":
    main()
