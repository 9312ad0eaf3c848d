"""Corpus registry, resolution (cache, mirror, download), reading and cleaning; no network."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import unicodedata
import urllib.error
from pathlib import Path

import pytest

from chargen import paths
from chargen.data import corpora
from chargen.data.corpora import (
    CorpusText,
    clean_text,
    list_corpora,
    load_corpus,
    load_names_raw,
    load_registry,
    read_text_file,
    resolve_files,
)
from chargen.errors import ChecksumMismatch, CorpusError

NO_MIRROR = "no corpus mirror: set CHARGEN_MIRROR to a folder like ../shared/corpora"
SIX = {"grimm", "tinyshakespeare", "origin", "democracy", "names", "firstnames"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """A private cache, no mirror and downloads allowed; returns the mirror the session had."""
    session_mirror = os.environ.get("CHARGEN_MIRROR")
    monkeypatch.setenv("CHARGEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARGEN_MIRROR", raising=False)
    monkeypatch.delenv("CHARGEN_OFFLINE", raising=False)
    return session_mirror


# --------------------------------------------------------------------------- a fake registry

TINY = "\ufeffOnce upon a time\r\nthere was a test.\r\n".encode()
ALPHA = b"Anna\nAnna\n\n  Bob  \n"
ZULU = "Zola\nZ\u00e9\n".encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(name: str, kind: str, files: dict[str, bytes], urls: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "title": name.title(),
        "description": f"the {name} test corpus",
        "kind": kind,
        "licence": "test",
        "cleaning": {"strip_bom": True, "gutenberg": kind == "text", "nfc": True},
        "files": [
            {
                "path": rel,
                "url": (urls or {}).get(rel, f"https://example.invalid/{rel}"),
                "sha256": sha(data),
                "size": len(data),
            }
            for rel, data in files.items()
        ],
    }


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the registry at two small corpora: 'tiny' (text) and 'names' (two languages)."""

    def install(urls: dict[str, str] | None = None, tiny: bytes = TINY) -> Path:
        registry = tmp_path / f"registry-{len(list(tmp_path.glob('registry-*')))}.json"
        data = {
            "format": 1,
            "corpora": [
                entry("tiny", "text", {"tiny.txt": tiny}, urls),
                entry("names", "names", {"names/Zulu.txt": ZULU, "names/Alpha.txt": ALPHA}, urls),
            ],
        }
        registry.write_text(json.dumps(data), encoding="utf-8")
        monkeypatch.setattr(paths, "registry_path", lambda: registry)
        return registry

    install()
    return install


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "mirror"
    (root / "names").mkdir(parents=True)
    (root / "tiny.txt").write_bytes(TINY)
    (root / "names" / "Zulu.txt").write_bytes(ZULU)
    (root / "names" / "Alpha.txt").write_bytes(ALPHA)
    monkeypatch.setenv("CHARGEN_MIRROR", str(root))
    return root


def cache_root() -> Path:
    return paths.cache_dir() / "corpora"


def leftovers() -> list[Path]:
    root = cache_root()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class Source:
    """An opener serving fixed bytes in small chunks, optionally failing after the first."""

    def __init__(self, data: bytes, fail: BaseException | None = None) -> None:
        self.data, self.fail, self.urls = data, fail, []

    def __call__(self, url: str) -> io.BufferedIOBase:
        self.urls.append(url)
        stream = io.BytesIO(self.data)
        fail = self.fail

        class Response(io.RawIOBase):
            reads = 0

            def read(self, n: int = -1) -> bytes:
                self.reads += 1
                if fail is not None and self.reads > 1:
                    raise fail
                return stream.read(min(n, 7) if n and n > 0 else 7)

        return Response()


def refuse(url: str):
    raise AssertionError(f"unexpected download of {url}")


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_six_corpora_with_valid_checksums() -> None:
    registry = load_registry()
    assert set(registry) == SIX
    assert registry["names"].kind == "names" and len(registry["names"].files) == 18
    assert registry["firstnames"].kind == "lines"
    assert {registry[n].kind for n in ("grimm", "tinyshakespeare", "origin", "democracy")} == {"text"}
    for corpus in registry.values():
        assert corpus.title and corpus.description and corpus.licence
        for f in corpus.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            assert f.size > 0
            assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/", f.url)
    assert registry["grimm"].cleaning == {"strip_bom": True, "gutenberg": True, "nfc": True}
    assert not registry["tinyshakespeare"].cleaning["gutenberg"]


def test_registry_json_is_stable() -> None:
    text = paths.registry_path().read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    assert [c["name"] for c in data["corpora"]] == [
        "grimm", "tinyshakespeare", "origin", "democracy", "names", "firstnames"
    ]


def test_library_does_not_import_torch_typer_or_rich() -> None:
    code = (
        "import sys, chargen.data.corpora; "
        "bad = {'torch', 'typer', 'rich'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=paths.PROJECT_ROOT)


# --------------------------------------------------------------------------- resolution


def test_mirror_file_resolves_in_place(fake, mirror: Path) -> None:
    assert resolve_files("tiny", opener=refuse) == [mirror / "tiny.txt"]
    assert leftovers() == []  # a mirror is read in place, never copied


def test_tampered_mirror_file_is_a_checksum_mismatch(fake, mirror: Path) -> None:
    (mirror / "tiny.txt").write_bytes(TINY.replace(b"test", b"TEST"))
    with pytest.raises(ChecksumMismatch) as info:
        resolve_files("tiny", opener=refuse)
    message = str(info.value)
    assert str(mirror / "tiny.txt") in message
    assert sha(TINY) in message and sha(TINY.replace(b"test", b"TEST")) in message
    assert "\n" not in message


def test_download_lands_in_the_cache_verified(fake) -> None:
    source = Source(TINY)
    calls: list[tuple[str, int, int | None]] = []
    (path,) = resolve_files("tiny", opener=source, progress=lambda *a: calls.append(a))
    assert path == cache_root() / "tiny.txt"
    assert path.read_bytes() == TINY
    assert source.urls == ["https://example.invalid/tiny.txt"]
    assert calls[0] == ("tiny.txt", 0, len(TINY)) and calls[-1] == ("tiny.txt", len(TINY), len(TINY))
    assert leftovers() == [path]
    # Second time round the verified cache answers; no download.
    assert resolve_files("tiny", opener=refuse) == [path]


def test_download_through_a_file_url(fake, tmp_path: Path) -> None:
    src = tmp_path / "upstream"
    (src / "names").mkdir(parents=True)
    (src / "tiny.txt").write_bytes(TINY)
    fake(urls={"tiny.txt": (src / "tiny.txt").as_uri()})
    (path,) = resolve_files("tiny")  # the default opener handles file:// URLs
    assert path == cache_root() / "tiny.txt" and path.read_bytes() == TINY


def test_damaged_cache_file_is_fetched_again(fake) -> None:
    target = cache_root() / "tiny.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * len(TINY))
    assert resolve_files("tiny", opener=Source(TINY)) == [target]
    assert target.read_bytes() == TINY


def test_download_with_wrong_checksum_leaves_nothing(fake) -> None:
    wrong = TINY.replace(b"test", b"TEST")
    with pytest.raises(ChecksumMismatch) as info:
        resolve_files("tiny", opener=Source(wrong))
    assert sha(wrong) in str(info.value) and sha(TINY) in str(info.value)
    assert leftovers() == []


def test_download_larger_than_registered_stops_and_leaves_nothing(fake) -> None:
    with pytest.raises(ChecksumMismatch, match="larger than"):
        resolve_files("tiny", opener=Source(TINY + b"more bytes than registered"))
    assert leftovers() == []


@pytest.mark.parametrize(
    "failure, expected",
    [
        (ConnectionResetError("connection reset by peer"), CorpusError),
        (TimeoutError("read timed out"), CorpusError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_failure_mid_stream_leaves_nothing(fake, failure: BaseException, expected: type) -> None:
    with pytest.raises(expected) as info:
        resolve_files("tiny", opener=Source(TINY, fail=failure))
    if expected is CorpusError:
        assert "example.invalid/tiny.txt" in str(info.value) and "\n" not in str(info.value)
    assert leftovers() == []


def test_network_error_is_one_line_corpus_error(fake) -> None:
    def unreachable(url: str):
        raise urllib.error.URLError("[Errno -2] Name or service\nnot known")

    with pytest.raises(CorpusError) as info:
        resolve_files("tiny", opener=unreachable)
    message = str(info.value)
    assert "\n" not in message and "Name or service not known" in message
    assert "CHARGEN_MIRROR" in message
    assert leftovers() == []


@pytest.mark.parametrize("value", ["1", "true", "YES", "On"])
def test_offline_without_cache_names_the_mirror_variable(fake, monkeypatch, value: str) -> None:
    monkeypatch.setenv("CHARGEN_OFFLINE", value)
    with pytest.raises(CorpusError) as info:
        resolve_files("tiny", opener=refuse)
    message = str(info.value)
    assert "CHARGEN_MIRROR" in message and "'tiny'" in message and "tiny.txt" in message
    assert str(cache_root() / "tiny.txt") in message
    assert "\n" not in message


def test_offline_still_uses_cache_and_mirror(fake, mirror: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHARGEN_OFFLINE", "1")
    assert resolve_files("tiny", opener=refuse) == [mirror / "tiny.txt"]


def test_offline_falsy_value_allows_download(fake, monkeypatch) -> None:
    monkeypatch.setenv("CHARGEN_OFFLINE", "0")
    assert resolve_files("tiny", opener=Source(TINY)) == [cache_root() / "tiny.txt"]


def test_unknown_name_lists_known_names() -> None:
    for call in (resolve_files, load_corpus):
        with pytest.raises(CorpusError) as info:
            call("shakespear")
        message = str(info.value)
        assert "shakespear" in message and "path" in message
        for name in SIX:
            assert name in message


# --------------------------------------------------------------------------- load_corpus


def test_load_corpus_cleans_a_registered_text(fake, mirror: Path) -> None:
    text = load_corpus("tiny", opener=refuse)
    assert isinstance(text, CorpusText)
    assert text.text == "Once upon a time\nthere was a test.\n"
    assert text.name == "tiny" and text.sha256 == sha(TINY)
    assert "mirror" in text.source and str(mirror / "tiny.txt") in text.source


def test_load_corpus_refuses_the_names_corpus(fake, mirror: Path) -> None:
    with pytest.raises(CorpusError, match="names loader"):
        load_corpus("names")


def test_load_corpus_reads_a_file_path(tmp_path: Path) -> None:
    raw = "\ufeffLine one\r\nLine two\r\n\r\n".encode()
    book = tmp_path / "my book.txt"
    book.write_bytes(raw)
    text = load_corpus(str(book))
    assert text.text == "Line one\nLine two\n"
    assert text.name == "my book" and text.sha256 == sha(raw) and str(book) in text.source


def test_load_corpus_cuts_gutenberg_only_when_marked(tmp_path: Path) -> None:
    marked = tmp_path / "pg.txt"
    marked.write_text(GUTENBERG_SAMPLE, encoding="utf-8")
    assert load_corpus(str(marked)).text == GUTENBERG_BODY
    plain = tmp_path / "plain.txt"
    plain.write_text("*** a line of stars ***\nEnd of chapter one.\n", encoding="utf-8")
    assert load_corpus(str(plain)).text == "*** a line of stars ***\nEnd of chapter one.\n"


@pytest.mark.parametrize("arg", ["missing/book.txt", "book.txt", "./book", "~/no-such-chargen-file"])
def test_missing_path_is_no_such_file_not_unknown_corpus(tmp_path, monkeypatch, arg: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(arg)


# --------------------------------------------------------------------------- read_text_file


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"text\x00\x01\x02binary", r"binary \(NUL byte at offset 4\)"),
        (b"caf\xc3\xa9 ok\nbad \xff here", r"not valid UTF-8: byte 0xff at offset 13 \(line 2\)"),
        (b"\xff\xfeh\x00i\x00", "UTF-16"),
        ("dir", "is a directory"),
    ],
)
def test_read_text_file_errors(tmp_path: Path, content, pattern: str) -> None:
    path = tmp_path / "input.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CorpusError, match=pattern) as info:
        read_text_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_text_file_reads_utf8(tmp_path: Path) -> None:
    path = tmp_path / "ok.txt"
    path.write_bytes("\ufeffcaf\u00e9\r\n".encode())
    assert read_text_file(path) == "\ufeffcaf\u00e9\r\n"  # cleaning is clean_text's job


# --------------------------------------------------------------------------- clean_text

GUTENBERG_BODY = "THE TITLE\n\nChapter 1\n\nIt was a dark night.\nThe end.\n"
GUTENBERG_SAMPLE = (
    "\ufeffThe Project Gutenberg EBook of The Title, by Someone\r\n\r\n"
    "This eBook is for the use of anyone anywhere at no cost.\r\n\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK THE TITLE ***\r\n\r\n\r\n"
    "Produced by A. Volunteer and the Online\r\nDistributed Proofreading Team\r\n\r\n\r\n"
    + GUTENBERG_BODY.replace("\n", "\r\n")
    + "\r\n\r\n\r\nEnd of the Project Gutenberg EBook of The Title, by\r\nSomeone\r\n\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK THE TITLE ***\r\n\r\n"
    "*** START: FULL LICENSE ***\r\nProject Gutenberg is a registered trademark.\r\n"
)


def test_clean_text_cuts_gutenberg_header_and_footer() -> None:
    assert clean_text(GUTENBERG_SAMPLE) == GUTENBERG_BODY


def test_clean_text_gutenberg_marker_variants() -> None:
    newer = (
        "Title: X\n\n***START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
        "There are several editions of this ebook in the Project Gutenberg\ncollection.\n\n"
        "1228    1859, First Edition\n2009    1872, Sixth Edition\n\n\n"
        "X\n\nBody text.\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n"
    )
    assert clean_text(newer) == "X\n\nBody text.\n"
    older = (
        "**The Project Gutenberg Etext of Y**\nsmall print\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        "Y\n\nOld body.\n\nEnd of Project Gutenberg's Etext of Y\n"
    )
    assert clean_text(older) == "Y\n\nOld body.\n"


def test_clean_text_without_markers_changes_only_hygiene() -> None:
    assert clean_text("\n\n  \nplain text\r\nsecond\rthird\n\n \n") == "plain text\nsecond\nthird\n"
    assert clean_text("no final newline") == "no final newline"
    assert clean_text("  indented first line\n") == "  indented first line\n"


def test_clean_text_nfc_and_switches() -> None:
    assert clean_text("caf" + "e\u0301\n") == "caf\u00e9\n"
    assert unicodedata.is_normalized("NFC", clean_text("A\u030a ring\n"))
    assert clean_text("e\u0301\n", nfc=False) == "e\u0301\n"
    assert clean_text("\ufeffx\n") == "x\n"
    assert clean_text("\ufeffx\n", strip_bom=False) == "\ufeffx\n"
    assert clean_text(GUTENBERG_SAMPLE, gutenberg=False).startswith("The Project Gutenberg EBook")


# --------------------------------------------------------------------------- names and listing


def test_load_names_raw_from_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "lists"
    root.mkdir()
    (root / "Zulu.txt").write_bytes(ZULU)
    (root / "Alpha.txt").write_bytes(ALPHA)
    names = load_names_raw(root=root)
    assert list(names) == ["Alpha", "Zulu"]
    assert names["Alpha"] == ["Anna", "Anna", "Bob"]  # stripped, blank dropped, no dedup
    assert names["Zulu"] == ["Zola", "Z\u00e9"]


def test_load_names_raw_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no .*txt files"):
        load_names_raw(root=tmp_path)
    with pytest.raises(CorpusError, match="no such folder"):
        load_names_raw(root=tmp_path / "absent")


def test_load_names_raw_from_the_registry(fake, mirror: Path) -> None:
    assert load_names_raw(opener=refuse) == {"Alpha": ["Anna", "Anna", "Bob"], "Zulu": ["Zola", "Z\u00e9"]}


def test_list_corpora_reports_locations_cheaply(fake, mirror: Path) -> None:
    cached = cache_root() / "tiny.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(TINY)
    (mirror / "names" / "Zulu.txt").unlink()
    status = {s.name: s for s in list_corpora()}
    assert status["tiny"].location == "cache" and status["tiny"].path == cached
    assert status["tiny"].size_bytes == len(TINY) and status["tiny"].kind == "text"
    assert status["names"].location is None
    (mirror / "names" / "Zulu.txt").write_bytes(ZULU)
    cached.write_bytes(TINY + b"!")  # wrong size: not counted as cached
    status = {s.name: s for s in list_corpora()}
    assert status["tiny"].location == "mirror" and status["tiny"].path == mirror / "tiny.txt"
    assert status["names"].location == "mirror" and status["names"].path == mirror / "names"


# --------------------------------------------------------------------------- the real corpora


@pytest.fixture
def real_mirror(isolated: str | None, monkeypatch: pytest.MonkeyPatch):
    """The session's mirror (offline), or a skip; call it with the files a test needs."""

    def need(*rels: str) -> Path:
        if not isolated:
            pytest.skip(NO_MIRROR)
        root = Path(isolated).expanduser()
        if not all((root / rel).is_file() for rel in rels):
            pytest.skip(NO_MIRROR)
        monkeypatch.setenv("CHARGEN_MIRROR", str(root))
        monkeypatch.setenv("CHARGEN_OFFLINE", "1")
        return root

    return need


BOOKS = {
    # name: (file, start of the cleaned text, end of it, words the tales/chapters must keep)
    "grimm": ("grimm.txt", "FAIRY TALES\n\nBy The Brothers Grimm", "children’s reading ever\nsince.\n",
              ["RAPUNZEL", "HANSEL AND GRETEL", "SNOWDROP", "RUMPELSTILTSKIN"]),
    "democracy": ("democracy_in_america.txt", "DEMOCRACY IN AMERICA\n\nBy Alexis De Tocqueville",
                  "increases most rapidly in proportion.]\n", ["township", "Federal Constitution"]),
    "origin": ("origin_of_species.txt", "On the Origin of Species\n\nBY MEANS OF NATURAL SELECTION",
               "Zeuglodon, 302.\n", ["natural selection", "STRUGGLE FOR EXISTENCE"]),
}


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(BOOKS))
def test_gutenberg_books_clean_to_the_book_alone(real_mirror, name: str) -> None:
    rel, start, end, words = BOOKS[name]
    root = real_mirror(rel)
    raw = (root / rel).read_text(encoding="utf-8")
    text = load_corpus(name, opener=refuse)
    assert text.text.startswith(start) and text.text.endswith(end)
    for boilerplate in ("Gutenberg", "GUTENBERG", "LICENSE", "trademark", "Produced by", "\ufeff", "\r"):
        assert boilerplate not in text.text, boilerplate
    for word in words:
        assert word in text.text, word
    assert 0.9 * len(raw) < len(text.text) < len(raw)
    assert text.sha256 == sha((root / rel).read_bytes())


@pytest.mark.corpus
def test_tinyshakespeare_is_unchanged(real_mirror) -> None:
    root = real_mirror("tinyshakespeare.txt")
    text = load_corpus("tinyshakespeare", opener=refuse)
    assert text.text == (root / "tinyshakespeare.txt").read_text(encoding="utf-8")
    assert len(text.text) == 1_115_394


@pytest.mark.corpus
def test_firstnames_has_one_name_per_line(real_mirror) -> None:
    real_mirror("makemore_names.txt")
    lines = load_corpus("firstnames", opener=refuse).text.split("\n")
    assert len(lines) == 32_033 and lines[0] == "emma" and all(re.fullmatch(r"[a-z]+", n) for n in lines)


@pytest.mark.corpus
def test_names_has_18_languages_and_20074_lines(real_mirror) -> None:
    real_mirror(*(f.path for f in load_registry()["names"].files))
    names = load_names_raw(opener=refuse)
    assert len(names) == 18 and list(names) == sorted(names)
    assert sum(len(v) for v in names.values()) == 20_074
    assert len(names["Russian"]) == 9_408 and len(names["Arabic"]) == 2_000
    assert "To The First\u00a0 Page" in names["Russian"]  # upstream quirks are kept


@pytest.mark.corpus
def test_list_corpora_finds_the_mirror(real_mirror) -> None:
    root = real_mirror(*(f.path for c in load_registry().values() for f in c.files))
    status = list_corpora()
    assert [s.name for s in status] == list(load_registry())
    assert all(s.location == "mirror" for s in status)
    assert {s.name: s.path for s in status}["names"] == root / "names"


def test_corpora_module_is_public_api() -> None:
    for name in corpora.__all__:
        assert hasattr(corpora, name), name
