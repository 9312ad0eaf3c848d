"""Labelled surname files: ``name<TAB>language`` per line, read and checked with one clear error per mistake.

- Blank lines and lines starting with ``#`` are skipped.
- The language is matched case-insensitively against the model's languages; several languages
  may be given separated by commas (``Smith<TAB>English,Scottish``): a guess of any of them is
  correct, the rule the corpus's own multi-language names follow. A name on several lines gets
  the union of their languages.
- Names are folded as user input is (``chargen.data.names.fold_input``).
- An optional third column lists other spellings of the name, comma-separated (the Faker
  training file's German ``ue`` spellings): ``read_spellings`` returns them for training
  augmentation; evaluation ignores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chargen.data.names import fold_input, has_letter
from chargen.errors import ChargenError
from chargen.safeio import MiB, describe, read_regular

MAX_FILE_BYTES = 256 * MiB  # far more names than any labelled set; a bound keeps /dev/zero out
MAX_NAME_LENGTH = 100  # characters: longer is not a surname, and one such line would cost a long forward pass


class LabelledFileError(ChargenError):
    """A ``name<TAB>language`` file with a line that cannot be read."""


def parse_labelled(lines: Sequence[str], languages: Sequence[str], source: str = "<input>") -> dict[str, set[str]]:
    """Folded name -> its set of languages (spelled as in ``languages``), in first-seen order."""
    lowered = {lang.lower(): lang for lang in languages}
    out: dict[str, set[str]] = {}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        if "\t" not in line:
            raise LabelledFileError(f"{where}: no tab; each line is name<TAB>language")
        raw_name, _, raw_langs = line.partition("\t")
        raw_langs = raw_langs.partition("\t")[0]
        name = fold_input(raw_name)
        if not raw_name.strip():
            raise LabelledFileError(f"{where}: empty name")
        if not has_letter(name):
            raise LabelledFileError(f"{where}: name {raw_name!r} has no usable letter (A-Z after folding accents)")
        if len(name) > MAX_NAME_LENGTH:
            raise LabelledFileError(f"{where}: a name of {len(name):,} characters ({raw_name[:20]!r}...) is not a "
                                    f"surname; at most {MAX_NAME_LENGTH}")
        langs = set()
        for lang in raw_langs.split(","):
            lang = lang.strip()
            if not lang:
                raise LabelledFileError(f"{where}: empty language")
            if lang.lower() not in lowered:
                raise LabelledFileError(f"{where}: unknown language {lang!r}; the model knows: {', '.join(languages)}")
            langs.add(lowered[lang.lower()])
        out.setdefault(name, set()).update(langs)
    if not out:
        raise LabelledFileError(f"{source}: no labelled names")
    return out


def read_labelled(path: Path, languages: Sequence[str]) -> dict[str, set[str]]:
    """``parse_labelled`` on a UTF-8 file, with unreadable files reported in one line."""
    return parse_labelled(_read_lines(path), languages, str(path))


def read_spellings(path: Path) -> dict[str, list[str]]:
    """Folded name -> the other spellings in a labelled file's third column (names without one left out)."""
    out: dict[str, list[str]] = {}
    for line in _read_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) >= 3 and not line.lstrip().startswith("#"):
            other = [fold_input(s) for s in fields[2].split(",") if has_letter(fold_input(s))]
            out.setdefault(fold_input(fields[0]), []).extend(other)
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        text = read_regular(path, MAX_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise LabelledFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise LabelledFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise LabelledFileError(f"{path}: cannot read it ({describe(e)})") from None
    return text.splitlines()
