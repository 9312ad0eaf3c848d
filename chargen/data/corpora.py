"""Corpus registry, resolution (cache, mirror, verified download), text reading and cleaning."""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import re
import tempfile
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from chargen import paths
from chargen.errors import ChecksumMismatch, CorpusError
from chargen.safeio import NotRegularFile, read_regular

__all__ = [
    "KINDS",
    "Corpus",
    "CorpusFile",
    "CorpusStatus",
    "CorpusText",
    "Opener",
    "ProgressFn",
    "cache_path",
    "clean_text",
    "list_corpora",
    "load_corpus",
    "load_names_raw",
    "load_registry",
    "mirror_dir",
    "offline",
    "read_text_file",
    "resolve_files",
]

ProgressFn = Callable[[str, int, int | None], None]
"""``(description, bytes_done, bytes_total)``; the CLI turns these calls into a progress bar."""

Opener = Callable[[str], BinaryIO]
"""Opens a URL for reading; injectable so tests never touch the network."""

KINDS = ("text", "names", "lines")
NAMES_CORPUS = "names"
MIRROR_ENV = "CHARGEN_MIRROR"
OFFLINE_ENV = "CHARGEN_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 64 * 1024
_TRUTHY = {"1", "true", "yes", "on"}
_CLEANING_KEYS = ("strip_bom", "gutenberg", "nfc")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its place in the mirror/cache layout and how to fetch and check it."""

    path: str  # relative POSIX path, e.g. "grimm.txt" or "names/Arabic.txt"
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Corpus:
    """A registered corpus; ``cleaning`` holds the keyword arguments for :func:`clean_text`."""

    name: str
    title: str
    description: str
    kind: str  # one of KINDS
    licence: str
    # A dict cannot be hashed; leaving it out of the hash keeps Corpus usable as a key.
    cleaning: dict[str, bool] = field(hash=False)
    files: tuple[CorpusFile, ...] = ()


def load_registry() -> dict[str, Corpus]:
    """The registered corpora by name, in registry order (read once per registry file)."""
    return dict(_read_registry(paths.registry_path()))


@functools.lru_cache(maxsize=4)
def _read_registry(path: Path) -> dict[str, Corpus]:
    # Keyed by path so a test that points registry_path() elsewhere gets its own registry.
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"corpus registry not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read corpus registry {path}: {_one_line(exc)}") from None
    try:
        corpora = [_parse_corpus(entry) for entry in data["corpora"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"corpus registry {path} is malformed: {_one_line(exc)}") from None
    registry: dict[str, Corpus] = {}
    for corpus in corpora:
        if corpus.name in registry:
            raise CorpusError(f"corpus registry {path} lists {corpus.name!r} twice")
        registry[corpus.name] = corpus
    return registry


def _parse_corpus(entry: dict[str, Any]) -> Corpus:
    name = str(entry["name"])
    kind = str(entry["kind"])
    if kind not in KINDS:
        raise ValueError(f"corpus {name!r} has kind {kind!r}, not one of {', '.join(KINDS)}")
    cleaning = {str(k): bool(v) for k, v in dict(entry.get("cleaning", {})).items()}
    if unknown := set(cleaning) - set(_CLEANING_KEYS):
        raise ValueError(f"corpus {name!r} has unknown cleaning rules {sorted(unknown)}")
    files = tuple(_parse_file(name, f) for f in entry["files"])
    if not files:
        raise ValueError(f"corpus {name!r} has no files")
    # load_corpus hands back one text and one sha256; several files only make sense for names.
    if kind != "names" and len(files) != 1:
        raise ValueError(f"corpus {name!r} of kind {kind!r} must have exactly one file")
    return Corpus(
        name=name,
        title=str(entry["title"]),
        description=str(entry["description"]),
        kind=kind,
        licence=str(entry["licence"]),
        cleaning=cleaning,
        files=files,
    )


def _parse_file(corpus: str, entry: dict[str, Any]) -> CorpusFile:
    rel = str(entry["path"])
    parts = Path(rel).parts
    # The path is joined onto the cache and mirror folders; it must stay inside them.
    if not parts or Path(rel).is_absolute() or ".." in parts or "\\" in rel:
        raise ValueError(f"corpus {corpus!r} has an unsafe file path {rel!r}")
    sha = str(entry["sha256"])
    if not _SHA256_RE.fullmatch(sha):
        raise ValueError(f"corpus {corpus!r} file {rel!r} has an invalid sha256 {sha!r}")
    size = int(entry["size"])
    if size <= 0:
        raise ValueError(f"corpus {corpus!r} file {rel!r} has size {size}")
    return CorpusFile(path=rel, url=str(entry["url"]), sha256=sha, size=size)


def _get(name: str) -> Corpus:
    registry = load_registry()
    if name not in registry:
        raise CorpusError(_unknown_message(name, registry))
    return registry[name]


def _unknown_message(name: str, registry: dict[str, Corpus]) -> str:
    return (
        f"unknown corpus {name!r}; known corpora: {', '.join(registry)} "
        "(a path to a UTF-8 text file also works)"
    )


# --------------------------------------------------------------------------- resolution


def offline() -> bool:
    """Whether $CHARGEN_OFFLINE forbids downloads (1/true/yes/on, any case)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUTHY


def mirror_dir() -> Path | None:
    """The read-only mirror folder named by $CHARGEN_MIRROR (laid out like the registry paths)."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_path(file: CorpusFile) -> Path:
    """Where a verified download of ``file`` lives."""
    return paths.cache_dir() / "corpora" / file.path


def resolve_files(
    name: str, *, progress: ProgressFn | None = None, opener: Opener | None = None
) -> list[Path]:
    """Local, verified paths of a registered corpus's files: cache, then mirror, then download."""
    corpus = _get(name)
    return [path for path, _ in _resolve(corpus, progress, opener)]


def _resolve(
    corpus: Corpus, progress: ProgressFn | None, opener: Opener | None
) -> list[tuple[Path, str]]:
    return [_resolve_file(corpus, f, progress, opener) for f in corpus.files]


def _resolve_file(
    corpus: Corpus, file: CorpusFile, progress: ProgressFn | None, opener: Opener | None
) -> tuple[Path, str]:
    """One file as (path, how it was found: "cache", "mirror" or "download")."""
    cached = cache_path(file)
    stale = False
    if cached.is_file():
        if cached.stat().st_size == file.size and _sha256_file(cached) == file.sha256:
            return cached, "cache"
        # The cache is ours and only ever receives verified files, so a bad one is damage:
        # drop it and fetch again rather than fail forever on it.
        stale = True
        _unlink_quietly(cached)

    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / file.path
        if candidate.is_file():
            actual = _sha256_file(candidate)
            if actual != file.sha256:
                raise ChecksumMismatch(
                    f"mirror file {candidate} (corpus {corpus.name!r}) has sha256 {actual}, "
                    f"expected {file.sha256}"
                )
            return candidate, "mirror"

    if offline():
        where = f"it is not in the mirror {mirror}; " if mirror is not None else ""
        damaged = "the cached copy failed its sha256 check and was removed; " if stale else ""
        raise CorpusError(
            f"corpus {corpus.name!r} needs {file.path}, which is not cached and {OFFLINE_ENV} "
            f"forbids downloading it; {damaged}{where}set {MIRROR_ENV} to a folder holding "
            f"{file.path} (like ../shared/corpora) or place the file at {cached}"
        )
    _download(corpus, file, cached, progress, opener or _default_opener)
    return cached, "download"


def _default_opener(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)  # noqa: S310 (pinned URLs)


# Errors that mean "the source could not be read"; URLError/HTTPError/timeouts are OSErrors.
_FETCH_ERRORS = (OSError, ValueError, http.client.HTTPException)


def _download(
    corpus: Corpus,
    file: CorpusFile,
    dest: Path,
    progress: ProgressFn | None,
    opener: Opener,
) -> None:
    """Fetch ``file.url`` into a ``.part`` next to ``dest``, verify, then rename atomically."""

    def fetch_failed(exc: BaseException) -> CorpusError:
        return CorpusError(
            f"cannot download {file.path} (corpus {corpus.name!r}) from {file.url}: "
            f"{_describe_fetch_error(exc)}; set {MIRROR_ENV} to a folder holding it, "
            f"or place it at {dest}"
        )

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A unique name, so two processes fetching the same corpus cannot write into one file.
        fd, tmp = tempfile.mkstemp(prefix=f"{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        reason = _one_line(exc)
        raise CorpusError(f"cannot write to the corpus cache {dest.parent}: {reason}") from None
    part = Path(tmp)
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            if progress is not None:
                progress(file.path, 0, file.size)
            try:
                response = opener(file.url)
            except _FETCH_ERRORS as exc:
                raise fetch_failed(exc) from None
            try:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except _FETCH_ERRORS as exc:
                        raise fetch_failed(exc) from None
                    if not chunk:
                        break
                    done += len(chunk)
                    if done > file.size:
                        # Stop early: a source larger than registered cannot be the right file.
                        raise ChecksumMismatch(
                            f"download of {file.path} (corpus {corpus.name!r}) from {file.url} "
                            f"is larger than the registered {file.size} bytes; nothing was kept"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(file.path, done, file.size)
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != file.sha256:
            raise ChecksumMismatch(
                f"download of {file.path} (corpus {corpus.name!r}) from {file.url} has sha256 "
                f"{actual}, expected {file.sha256} ({done} of {file.size} bytes); nothing was kept"
            )
        os.replace(part, dest)
    except BaseException as exc:
        # Any failure, Ctrl-C included, must leave neither a partial file nor a bad one behind.
        _unlink_quietly(part)
        if isinstance(exc, OSError):
            raise CorpusError(f"cannot write {dest}: {_one_line(exc)}") from None
        raise


def _describe_fetch_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return _one_line(exc.reason)
    if isinstance(exc, TimeoutError):
        return f"timed out after {DOWNLOAD_TIMEOUT_S} s"
    return _one_line(exc)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {_one_line(exc)}") from None
    return digest.hexdigest()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _one_line(value: object) -> str:
    text = str(value) or type(value).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------- reading and cleaning


def read_text_file(path: Path) -> str:
    """A user's file as UTF-8 text; anything unreadable is a one-line CorpusError."""
    return _decode(Path(path), _read_bytes(Path(path)))


MAX_TEXT_BYTES = 1 << 30  # a text file is read whole into memory: 1 GiB is far past any corpus here


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise CorpusError(f"no such file: {path}")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory, not a text file")
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except NotRegularFile as exc:
        raise CorpusError(f"cannot read {path}: it {exc.strerror}; save the text to a file first") from None
    except OSError as exc:
        reason = exc.strerror or _one_line(exc)
        raise CorpusError(f"cannot read {path}: {reason}") from None
    if not data:
        raise CorpusError(f"{path} is empty")
    return data


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(f"{path} is UTF-16 text; save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{path} looks binary (NUL byte at offset {nul}), not UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{path} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}); save it as UTF-8"
        ) from None


_START_RE = re.compile(
    # "*** START OF THE/THIS PROJECT GUTENBERG EBOOK ...", with or without the space after ***;
    # old releases end their header small print with "*END*THE SMALL PRINT! ...".
    r"^[ \t]*(?:\*{3}[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG"
    r"|\*END\*[ \t]*THE[ \t]+SMALL[ \t]+PRINT)[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_END_RE = re.compile(
    # The "*** END OF ..." marker, or the "End of [the] Project Gutenberg's/EBook of ..." line
    # that precedes it (and alone closes the text in old releases); the first one wins.
    r"^[ \t]*(?:\*{3}[ \t]*END[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG"
    r"|End[ \t]+of[ \t]+(?:the[ \t]+)?Project[ \t]+Gutenberg)[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Producer credits and "other editions of this ebook" notes that follow the START marker.
_PG_NOTE_RE = re.compile(
    r"project gutenberg|gutenberg\.org|\be-?books?\b|\be-?texts?\b|filenumbers"
    r"|^[ \t]*(?:produced|prepared|transcribed|scanned|digiti[sz]ed)(?:[ \t]+\w+)?[ \t]+by\b"
    r"|distributed proofread",
    re.IGNORECASE | re.MULTILINE,
)
# The list of ebook numbers ("1228    1859, First Edition") under such an editions note.
_EBOOK_NUMBER_LINE_RE = re.compile(r"[ \t]*\d{3,6}[ \t]{2,}\S.*")
_MAX_NOTE_PARAGRAPHS = 6
_PARAGRAPH_RE = re.compile(r"(?:^[ \t]*\S[^\n]*(?:\n|\Z))+", re.MULTILINE)


def _cut_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's header and footer; unchanged when it has neither."""
    starts = list(_START_RE.finditer(text))
    end_match = _END_RE.search(text, starts[0].end() if starts else 0)
    if not starts and end_match is None:
        return text
    end = end_match.start() if end_match else len(text)
    # The last header marker before the footer: a START line may be followed by small print.
    header = [m for m in starts if m.end() <= end]
    start = header[-1].end() if header else 0
    return _drop_leading_notes(text[start:end])


def _drop_leading_notes(body: str) -> str:
    # Paragraphs are runs of non-blank lines; cutting at an offset keeps the rest byte-exact.
    cut = 0
    in_note = False
    for i, match in enumerate(_PARAGRAPH_RE.finditer(body)):
        para = match.group().strip()
        is_note = bool(_PG_NOTE_RE.search(para))
        is_number_list = in_note and all(
            _EBOOK_NUMBER_LINE_RE.fullmatch(line) for line in para.splitlines()
        )
        if i >= _MAX_NOTE_PARAGRAPHS or not (is_note or is_number_list):
            break
        in_note = True
        cut = match.end()
    return body[cut:]


def clean_text(
    raw: str, *, strip_bom: bool = True, gutenberg: bool = True, nfc: bool = True
) -> str:
    """Strip the BOM, use LF line ends, cut Project Gutenberg boilerplate, NFC, trim blank lines."""
    text = raw
    if strip_bom and text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if gutenberg:
        text = _cut_gutenberg(text)
    if nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\A(?:[ \t]*\n)+", "", text)
    # Blank lines at the end go, but a final newline stays so a clean file round-trips unchanged.
    return re.sub(r"\n(?:[ \t]*\n)*[ \t]*\Z", "\n", text)


# --------------------------------------------------------------------------- loading


@dataclass
class CorpusText:
    """A cleaned text, the sha256 of its raw source bytes, and where it came from."""

    name: str
    text: str
    sha256: str
    source: str


def load_corpus(
    name_or_path: str, *, progress: ProgressFn | None = None, opener: Opener | None = None
) -> CorpusText:
    """A registered text/lines corpus or a UTF-8 file, cleaned and ready for a language model."""
    registry = load_registry()
    # A registered name wins over a same-named file in the working folder; "./grimm" reaches it.
    if name_or_path in registry:
        corpus = registry[name_or_path]
        if corpus.kind == "names":
            raise CorpusError(
                f"corpus {corpus.name!r} is a folder of per-language surname lists, not one text; "
                "use the names loader (the surname tasks) for it"
            )
        [(path, how)] = _resolve(corpus, progress, opener)
        text = clean_text(read_text_file(path), **corpus.cleaning)
        return CorpusText(
            name=corpus.name,
            text=_non_empty(text, path),
            sha256=corpus.files[0].sha256,
            source=f"{corpus.name}: {_HOW[how]} {path}",
        )

    path = Path(name_or_path).expanduser()
    if path.exists():
        data = _read_bytes(path)
        text = clean_text(_decode(path, data))
        return CorpusText(
            name=path.stem or path.name,
            text=_non_empty(text, path),
            sha256=hashlib.sha256(data).hexdigest(),
            source=f"file {path.resolve()}",
        )
    if _looks_like_path(name_or_path):
        raise CorpusError(f"no such file: {path}")
    raise CorpusError(_unknown_message(name_or_path, registry))


_HOW = {"cache": "cached at", "mirror": "mirror file", "download": "downloaded to"}


def _non_empty(text: str, path: Path) -> str:
    if not text.strip():
        raise CorpusError(f"{path} has no text left after cleaning")
    return text


def _looks_like_path(value: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        any(sep in value for sep in seps)
        or value.startswith(("~", "."))
        or bool(Path(value).suffix)
    )


def load_names_raw(
    *, progress: ProgressFn | None = None, opener: Opener | None = None, root: Path | None = None
) -> dict[str, list[str]]:
    """The surname lists as {language: stripped non-empty lines}, languages sorted.

    ``root`` reads every ``<Language>.txt`` in that folder instead, unverified (for tests and
    for users' own lists); otherwise the registered ``names`` corpus is resolved and verified.
    """
    corpus = _get(NAMES_CORPUS)
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise CorpusError(f"no such folder: {root}")
        files = sorted(root.glob("*.txt"))
        if not files:
            raise CorpusError(f"{root} holds no <Language>.txt files")
    else:
        files = resolve_files(NAMES_CORPUS, progress=progress, opener=opener)
    # Cleaning here is BOM/line ends/NFC only: folding and deduplication belong to the caller.
    rules = {**corpus.cleaning, "gutenberg": False}
    names: dict[str, list[str]] = {}
    for path in sorted(files, key=lambda p: p.stem):
        text = clean_text(read_text_file(path), **rules)
        names[path.stem] = [line.strip() for line in text.split("\n") if line.strip()]
    return names


# --------------------------------------------------------------------------- listing


@dataclass
class CorpusStatus:
    """What ``chargen corpora`` shows; ``path`` is where the corpus is, or where a download goes."""

    name: str
    title: str
    kind: str
    size_bytes: int
    licence: str
    location: str | None  # "cache", "mirror" or None (would be downloaded)
    path: Path


def list_corpora() -> list[CorpusStatus]:
    """Every registered corpus and whether it is available, checked by size only (no hashing)."""
    mirror = mirror_dir()
    statuses = []
    for corpus in load_registry().values():
        found: list[tuple[str | None, Path]] = []
        for file in corpus.files:
            cached = cache_path(file)
            if _has_size(cached, file.size):
                found.append(("cache", cached))
            elif mirror is not None and _has_size(mirror / file.path, file.size):
                found.append(("mirror", mirror / file.path))
            else:
                found.append((None, cached))
        kinds = {where for where, _ in found}
        location = None if None in kinds else ("cache" if kinds == {"cache"} else "mirror")
        first = next((p for where, p in found if where == location), found[0][1])
        statuses.append(
            CorpusStatus(
                name=corpus.name,
                title=corpus.title,
                kind=corpus.kind,
                size_bytes=sum(f.size for f in corpus.files),
                licence=corpus.licence,
                location=location,
                path=first if len(corpus.files) == 1 else first.parent,
            )
        )
    return statuses


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False
