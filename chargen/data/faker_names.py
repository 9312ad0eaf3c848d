"""Real surnames nobody here wrote: Faker's per-locale last-name lists, mapped to the 18 languages and split by name.

Regenerate (needs the ``eval`` extra: ``pip install -e '.[eval]'``, which pins Faker and anyascii)::

    python -m chargen.data.faker_names --write

writes ``corpora/surnames_faker_{train,dev,test}.tsv`` (``name<TAB>language[,language]`` per
line, and in the training file a third column with other spellings of the name; ``#`` lines
say where they came from). Nothing in them is hand-edited: this script is their only author,
and a test checks that it reproduces them.

- **train** is added to the tutorial's training split (``chargen train --task classify
  --extra faker``);
- **dev** is the out-of-distribution development set: every choice (model, fusion weight,
  temperature, augmentation, threshold) is made on it and the tutorial's validation split;
- **test** is looked at once, at the end.

Locale -> language (Faker's ``last_names``; the Czech, Russian and Greek lists hold both the
male and the female forms; Polish: ``male_last_names`` + ``unisex_last_names``)::

    nl_NL nl_BE -> Dutch                        pt_PT pt_BR -> Portuguese      cs_CZ -> Czech
    de_DE de_AT de_CH de_LI -> German           fr_FR fr_CA fr_CH -> French    pl_PL -> Polish
    es_ES es_MX es_AR es_CL es_CO -> Spanish    it_IT -> Italian               en_GB -> English
    en_IE -> Irish                              vi_VN -> Vietnamese
    ja_JP ``last_romanized_names`` -> Japanese  zh_CN zh_TW ``last_romanized_names`` -> Chinese
    ru_RU (Cyrillic, transliterated by anyascii) -> Russian
    el_GR (Greek, ELOT digraphs ου/αυ/ευ/γγ -> ou/av/ev/ng, then anyascii) -> Greek

The Latin American lists are of Spanish-origin surnames with a few indigenous ones (``Choque``),
which this labels Spanish; the Swiss and Canadian French lists are French-speaking regions' names.

Left out, and why:

- **Korean**: Faker's ko_KR has 44 Hangul surnames; transliteration gives the Revised
  Romanisation (``Gim``, ``I``, ``Bag``), not the spellings Korean surnames are written with in
  Latin script (``Kim``, ``Lee``, ``Park``), so the labels would measure the transliterator.
- **Arabic**: the ar_* lists are unvocalised Arabic script; transliteration gives consonant
  skeletons (``'shj`'``, ``bw lhj``), not the romanised names of the corpus (``Haddad``, ``Nader``).
- **Scottish**: Faker has no Scottish locale. (en_GB's names are labelled English only; a Scottish
  guess for one of them counts as wrong.)
- **ga_IE**: Irish-language (Gaelic) spellings (``Ó Briain``, ``A tSithigh``), an orthography the
  corpus's anglicised Irish names (``O'Brien``) never show; en_IE's list stands for Irish.
- **fr_BE, de_LU**: Belgium's and Luxembourg's lists mix languages (fr_BE: ``Aerts``, ``Willems``,
  Flemish; de_LU: ``Da silva``, ``Pires``, Portuguese, and ``Guillaume``), so a locale label would
  be wrong for many names. fr_QC repeats fr_CA.
- **sk_SK, uk_UA**: Slovak and Ukrainian are languages of their own, not Czech and Russian;
  labelling them so would teach the classifier a confusion.
- **Names of origins outside the 18 languages** in national frequency lists (``EXCLUDED``:
  ``Yilmaz``, ``Patel``, ``Khan``, ...). Other immigrant names stay under their locale's language
  unless the tutorial lists them (then its labels win, below): noise we accept and measure.

**Folding**: ``chargen.data.names.fold_input`` (accents dropped, ``ł ß ø đ ...`` spelled in
ASCII). A German name with umlauts also gets its ``ue/oe/ae`` spelling as another spelling
(the training file's third column; used by the ``spellings`` augmentation), unless that
spelling is itself a name of any set.

**Deduplication across sources**: a name listed by several locales of different languages gets
all of them (``Murphy``: English and Irish), and a guess of any of them is correct, as in the
corpus. A name that the tutorial lists (under its fold or ``fold_input``) goes with the
tutorial's split and labels: it is dropped here. So no name is in two of train/dev/test.

**Split**, per label set: the sorted names are shuffled with ``random.Random("faker:<labels>")``;
the first half (rounded up) is train, then a quarter (rounded up) dev, the rest test.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from chargen import paths
from chargen.data.corpora import load_names_raw
from chargen.data.labelled import read_labelled, read_spellings
from chargen.data.names import NamesData, fold, fold_input, has_letter, label_sets, spellings
from chargen.errors import ChargenError, UsageError

FAKER_VERSION = "40.54.0"
ANYASCII_VERSION = "0.3.3"
PARTS = ("train", "dev", "test")
EXTRA = ("none", "faker")  # the training data added to the tutorial's training split

# language -> [(locale, attribute, transliterate)]
LOCALES: dict[str, list[tuple[str, str, bool]]] = {
    "Dutch": [("nl_NL", "last_names", False), ("nl_BE", "last_names", False)],
    "Portuguese": [("pt_PT", "last_names", False), ("pt_BR", "last_names", False)],
    "Czech": [("cs_CZ", "last_names", False)],
    "Polish": [("pl_PL", "male_last_names", False), ("pl_PL", "unisex_last_names", False)],
    "German": [("de_DE", "last_names", False), ("de_AT", "last_names", False), ("de_CH", "last_names", False),
               ("de_LI", "last_names", False)],
    "French": [("fr_FR", "last_names", False), ("fr_CA", "last_names", False), ("fr_CH", "last_names", False)],
    "Italian": [("it_IT", "last_names", False)],
    "Spanish": [("es_ES", "last_names", False), ("es_MX", "last_names", False), ("es_AR", "last_names", False),
                ("es_CL", "last_names", False), ("es_CO", "last_names", False)],
    "English": [("en_GB", "last_names", False)],
    "Irish": [("en_IE", "last_names", False)],
    "Vietnamese": [("vi_VN", "last_names", False)],
    "Japanese": [("ja_JP", "last_romanized_names", False)],
    "Chinese": [("zh_CN", "last_romanized_names", False), ("zh_TW", "last_romanized_names", False)],
    "Russian": [("ru_RU", "last_names", True)],
    "Greek": [("el_GR", "last_names", True)],
}
LEFT_OUT = ("Korean", "Arabic", "Scottish")
# Turkish, South Asian and West African names in the national lists: none of the 18 languages
EXCLUDED = frozenset({"Yilmaz", "Yildirim", "Kaya", "Patel", "Singh", "Begum", "Hussain", "Khan", "Diallo",
                      "Ahmed", "Ali"})
# ELOT 743 digraphs that a letter-by-letter transliteration gets wrong (ου -> "oy")
_GREEK_DIGRAPHS = {"ου": "ou", "Ου": "Ou", "ΟΥ": "OU", "αυ": "av", "Αυ": "Av", "ευ": "ev", "Ευ": "Ev",
                   "γγ": "ng", "Γγ": "Ng"}

Rows = list[tuple[str, tuple[str, ...], tuple[str, ...]]]  # (name, languages, other spellings)


class FakerUnavailable(ChargenError):
    """Faker or anyascii missing, or of another version than the committed files were made with."""


def _require() -> tuple[object, object]:
    try:
        import faker
        from anyascii import anyascii
    except ModuleNotFoundError as e:
        raise FakerUnavailable(f"{e.name} is not installed; pip install -e '.[eval]'") from None
    if faker.VERSION != FAKER_VERSION:
        raise FakerUnavailable(f"faker {faker.VERSION} is installed; the committed files come from {FAKER_VERSION}")
    return faker, anyascii


def transliterate(name: str, anyascii: object) -> str:
    """Accents off (NFD, marks dropped), Greek digraphs as ELOT 743, then anyascii letter by letter."""
    text = "".join(c for c in unicodedata.normalize("NFD", name) if unicodedata.category(c) != "Mn")
    for greek, latin in _GREEK_DIGRAPHS.items():
        text = text.replace(greek, latin)
    return anyascii(text)  # type: ignore[operator]


def faker_names() -> dict[str, tuple[set[str], set[str]]]:
    """Folded Faker surname -> (the languages whose locales list it, its raw spellings), before any dedup."""
    _, anyascii = _require()
    out: dict[str, tuple[set[str], set[str]]] = {}
    for language, sources in LOCALES.items():
        for locale, attribute, translit in sources:
            module = importlib.import_module(f"faker.providers.person.{locale}")
            for raw in getattr(module.Provider, attribute):
                text = transliterate(raw, anyascii) if translit else raw
                name = fold_input(text)
                if has_letter(name) and name not in EXCLUDED:
                    langs, raws = out.setdefault(name, (set(), set()))
                    langs.add(language)
                    raws.add(text)
    return out


def build_parts(corpus_names: set[str]) -> dict[str, Rows]:
    """``{part: [(name, languages, other spellings)]}``; names the tutorial lists dropped (see the docstring)."""
    found = faker_names()
    kept = {n: v for n, v in found.items()
            if n not in corpus_names and not any(fold(r) in corpus_names for r in v[1])}
    taken = corpus_names | set(found)  # a spelling that is a name of any set would leak it
    strata: dict[tuple[str, ...], list[str]] = {}
    for name, (langs, _) in kept.items():
        strata.setdefault(tuple(sorted(langs)), []).append(name)
    parts: dict[str, Rows] = {p: [] for p in PARTS}
    for key in sorted(strata):
        names = sorted(strata[key])
        random.Random(f"faker:{','.join(key)}").shuffle(names)
        n_train = (len(names) + 1) // 2
        n_dev = (len(names) - n_train + 1) // 2
        for part, chunk in zip(PARTS, (names[:n_train], names[n_train:n_train + n_dev], names[n_train + n_dev:])):
            for name in chunk:
                other: set[str] = set()
                if part == "train":
                    for raw in kept[name][1]:
                        other |= spellings(raw, key)
                parts[part].append((name, key, tuple(sorted(other - taken))))
    return {p: sorted(rows) for p, rows in parts.items()}


def output_path(part: str, folder: Path | None = None) -> Path:
    return (folder or paths.PROJECT_ROOT / "corpora") / f"surnames_faker_{part}.tsv"


def render(part: str, rows: Rows) -> str:
    header = (f"# Faker {FAKER_VERSION} last names (anyascii {ANYASCII_VERSION}), {part} part; generated by "
              "`python -m chargen.data.faker_names --write`; see that module for the locale mapping.\n")
    return header + "".join(f"{name}\t{','.join(ls)}" + (f"\t{','.join(other)}" if other else "") + "\n"
                            for name, ls, other in rows)


@dataclass
class TrainingNames:
    """The classifier's training names: each name's language ids and its other spellings (augmentation)."""

    names: list[str]
    targets: list[frozenset[int]]
    spellings: dict[str, list[str]]
    sha256: str  # identity of the added file ("" for none)


def training_names(data: NamesData, extra: str = "none", raw: dict[str, list[str]] | None = None) -> TrainingNames:
    """The tutorial's training split, plus the Faker training part when ``extra`` is ``faker``.

    A training name's other spellings come from its raw lines (``raw``: the corpus files'
    lines, for the tutorial names) and the Faker file's third column; a spelling that is a name
    of any split or part is left out, so no evaluation name is trained on.
    """
    if extra not in EXTRA:
        raise UsageError(f"extra must be one of {', '.join(EXTRA)}, got {extra!r}", params="extra")
    names, targets = list(data.splits["train"]), data.targets("train")
    other: dict[str, set[str]] = {}
    digest = ""
    taken = set(data.labels)
    if extra == "faker":
        path = output_path("train")
        for part in PARTS:
            taken |= set(read_labelled(output_path(part), data.languages))
        labelled = read_labelled(path, data.languages)
        clash = sorted(set(labelled) & set(data.labels))
        if clash:
            raise UsageError(f"{path}: lists tutorial names ({', '.join(clash[:3])}); regenerate it", params="extra")
        names += list(labelled)
        targets += [frozenset(data.index[lang] for lang in ls) for ls in labelled.values()]
        for name, spelled in read_spellings(path).items():
            other.setdefault(name, set()).update(spelled)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    train = set(data.splits["train"])
    for language, lines in (raw or {}).items():
        for line in lines:
            name = fold(line)
            if name in train:
                other.setdefault(name, set()).update(spellings(line, data.labels[name]))
    kept = {n: sorted(s - taken) for n, s in other.items()}
    return TrainingNames(names, targets, {n: s for n, s in kept.items() if s}, digest)


def main(argv: list[str] | None = None) -> None:
    """Print the per-language sizes of the three parts; ``--write`` (re)writes the three TSV files."""
    parser = argparse.ArgumentParser(prog="python -m chargen.data.faker_names", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write corpora/surnames_faker_{train,dev,test}.tsv")
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: corpora/)")
    args = parser.parse_args(argv)
    parts = build_parts(set(label_sets(load_names_raw())))
    for part, rows in parts.items():
        if args.write:
            path = output_path(part, args.out)
            path.write_text(render(part, rows), encoding="utf-8")
            print(f"wrote {path}")
    per = {p: Counter(lang for _, ls, _ in rows for lang in ls) for p, rows in parts.items()}
    print(f"{'language':<12}" + "".join(f"{p:>7}" for p in PARTS))
    for lang in sorted({lang for c in per.values() for lang in c}):
        print(f"{lang:<12}" + "".join(f"{per[p][lang]:>7}" for p in PARTS))
    print(f"{'names':<12}" + "".join(f"{len(parts[p]):>7}" for p in PARTS))
    print(f"{'spellings':<12}" + "".join(f"{sum(len(r[2]) for r in parts[p]):>7}" for p in PARTS))


if __name__ == "__main__":
    main()
