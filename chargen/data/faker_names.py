"""An out-of-distribution surname set nobody here wrote: Faker's per-locale last-name lists, mapped to the 18 languages.

Regenerate (needs the ``eval`` extra: ``pip install -e '.[eval]'``, which pins Faker and anyascii)::

    python -m chargen.data.faker_names --write

writes ``corpora/surnames_faker_val.tsv`` and ``corpora/surnames_faker_test.tsv``
(``name<TAB>language[,language]`` per line; ``#`` lines say where they came from). Nothing in
them is hand-edited: this script is their only author, and a test checks that it reproduces them.

Locale -> language (Faker's ``last_names``; the Czech, Russian and Greek lists hold both the
male and the female forms; Polish: ``male_last_names`` + ``unisex_last_names``)::

    nl_NL nl_BE -> Dutch        pt_PT pt_BR -> Portuguese    cs_CZ -> Czech       pl_PL -> Polish
    de_DE de_AT de_CH -> German fr_FR -> French              it_IT -> Italian     es_ES -> Spanish
    en_GB -> English            en_IE -> Irish               vi_VN -> Vietnamese
    ja_JP ``last_romanized_names`` -> Japanese               zh_CN ``last_romanized_names`` -> Chinese
    ru_RU (Cyrillic, transliterated by anyascii) -> Russian
    el_GR (Greek, ELOT digraphs ου/αυ/ευ/γγ -> ou/av/ev/ng, then anyascii) -> Greek

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

A name listed by several locales of different languages gets all of them (e.g. ``Murphy``:
English and Irish), and a guess of any of them is correct, as in the corpus. Names are folded
exactly as the corpus (``chargen.data.names.fold``), deduplicated, and **every name that occurs
in the corpus, under any language, is dropped**. The rest are split per label set: the sorted
names are shuffled with ``random.Random("faker:<labels>")`` and the first half (rounded up) is
the validation half (for choosing models), the other half the test half (for reporting).
"""

from __future__ import annotations

import argparse
import importlib
import random
import unicodedata
from collections import Counter
from pathlib import Path

from chargen import paths
from chargen.data.corpora import load_names_raw
from chargen.data.names import fold, has_letter, label_sets
from chargen.errors import ChargenError

FAKER_VERSION = "40.54.0"
ANYASCII_VERSION = "0.3.3"
HALVES = ("val", "test")

# language -> [(locale, attribute, transliterate)]
LOCALES: dict[str, list[tuple[str, str, bool]]] = {
    "Dutch": [("nl_NL", "last_names", False), ("nl_BE", "last_names", False)],
    "Portuguese": [("pt_PT", "last_names", False), ("pt_BR", "last_names", False)],
    "Czech": [("cs_CZ", "last_names", False)],
    "Polish": [("pl_PL", "male_last_names", False), ("pl_PL", "unisex_last_names", False)],
    "German": [("de_DE", "last_names", False), ("de_AT", "last_names", False), ("de_CH", "last_names", False)],
    "French": [("fr_FR", "last_names", False)],
    "Italian": [("it_IT", "last_names", False)],
    "Spanish": [("es_ES", "last_names", False)],
    "English": [("en_GB", "last_names", False)],
    "Irish": [("en_IE", "last_names", False)],
    "Vietnamese": [("vi_VN", "last_names", False)],
    "Japanese": [("ja_JP", "last_romanized_names", False)],
    "Chinese": [("zh_CN", "last_romanized_names", False)],
    "Russian": [("ru_RU", "last_names", True)],
    "Greek": [("el_GR", "last_names", True)],
}
LEFT_OUT = ("Korean", "Arabic", "Scottish")
# ELOT 743 digraphs that a letter-by-letter transliteration gets wrong (ου -> "oy")
_GREEK_DIGRAPHS = {"ου": "ou", "Ου": "Ou", "ΟΥ": "OU", "αυ": "av", "Αυ": "Av", "ευ": "ev", "Ευ": "Ev",
                   "γγ": "ng", "Γγ": "Ng"}


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


def faker_labels() -> dict[str, tuple[str, ...]]:
    """Folded Faker surname -> the sorted languages whose locales list it (corpus names not yet dropped)."""
    _, anyascii = _require()
    out: dict[str, set[str]] = {}
    for language, sources in LOCALES.items():
        for locale, attribute, translit in sources:
            module = importlib.import_module(f"faker.providers.person.{locale}")
            for raw in getattr(module.Provider, attribute):
                name = fold(transliterate(raw, anyascii) if translit else raw)
                if has_letter(name):
                    out.setdefault(name, set()).add(language)
    return {name: tuple(sorted(langs)) for name, langs in sorted(out.items())}


def build_halves(corpus_names: set[str]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """The validation and test halves: ``{half: [(name, languages)]}``, corpus names dropped."""
    labels = {n: ls for n, ls in faker_labels().items() if n not in corpus_names}
    strata: dict[tuple[str, ...], list[str]] = {}
    for name, ls in labels.items():
        strata.setdefault(ls, []).append(name)
    halves: dict[str, list[tuple[str, tuple[str, ...]]]] = {h: [] for h in HALVES}
    for key in sorted(strata):
        names = sorted(strata[key])
        random.Random(f"faker:{','.join(key)}").shuffle(names)
        cut = (len(names) + 1) // 2
        halves["val"] += [(n, key) for n in names[:cut]]
        halves["test"] += [(n, key) for n in names[cut:]]
    return {h: sorted(rows) for h, rows in halves.items()}


def output_path(half: str, folder: Path | None = None) -> Path:
    return (folder or paths.PROJECT_ROOT / "corpora") / f"surnames_faker_{half}.tsv"


def render(half: str, rows: list[tuple[str, tuple[str, ...]]]) -> str:
    header = (f"# Faker {FAKER_VERSION} last names (anyascii {ANYASCII_VERSION}), {half} half; generated by "
              "`python -m chargen.data.faker_names --write`; see that module for the locale mapping.\n")
    return header + "".join(f"{name}\t{','.join(ls)}\n" for name, ls in rows)


def main(argv: list[str] | None = None) -> None:
    """Print the per-language sizes of both halves; ``--write`` (re)writes the two TSV files."""
    parser = argparse.ArgumentParser(prog="python -m chargen.data.faker_names", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write corpora/surnames_faker_{val,test}.tsv")
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: corpora/)")
    args = parser.parse_args(argv)
    corpus = set(label_sets(load_names_raw()))
    halves = build_halves(corpus)
    for half, rows in halves.items():
        if args.write:
            path = output_path(half, args.out)
            path.write_text(render(half, rows), encoding="utf-8")
            print(f"wrote {path}")
    per = {h: Counter(lang for _, ls in rows for lang in ls) for h, rows in halves.items()}
    print(f"{'language':<12}{'val':>6}{'test':>6}")
    for lang in sorted({lang for c in per.values() for lang in c}):
        print(f"{lang:<12}{per['val'][lang]:>6}{per['test'][lang]:>6}")
    print(f"{'names':<12}{len(halves['val']):>6}{len(halves['test']):>6}")


if __name__ == "__main__":
    main()
