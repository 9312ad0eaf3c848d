"""Careful file access for untrusted paths: regular files only, opened without blocking, read within a bound.

A run directory or a corpus path may come from anyone: ``config.json`` may be a symlink to
``/dev/zero``, ``model.pt`` a FIFO with no writer, a corpus a terabyte. Everything here fails fast
with an ``OSError`` whose ``strerror`` says what was wrong, so callers that already turn an
``OSError`` into one line (``cannot read X: <strerror>``) need no new handling.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MiB = 1 << 20
GiB = 1 << 30


class NotRegularFile(OSError):
    """A FIFO, socket or device where a regular file was expected."""


class FileTooLarge(OSError):
    """A file past the size the caller is prepared to read."""


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message: "a folder", "a FIFO (named pipe)", ..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], limit: int | None = None) -> BinaryIO:
    """``path`` opened for binary reading, refusing anything but a regular file of at most ``limit`` bytes.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; the file
    type is then checked on the open descriptor (no race with a rename in between).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, f"is {file_kind(info.st_mode)}, not a regular file", str(path))
        if limit is not None and info.st_size > limit:
            raise FileTooLarge(errno.EFBIG, f"is {info.st_size:,} bytes, more than the {limit:,} allowed here",
                               str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked again while reading: files grow)."""
    with open_regular(path, limit) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(errno.EFBIG, f"is more than the {limit:,} bytes allowed here", str(path))
    return data


def describe(e: OSError) -> str:
    """An OSError's reason, on one line."""
    return e.strerror or " ".join(str(e).split()) or type(e).__name__


def is_plain_file(path: Path) -> bool:
    """A regular file itself, not a symlink (used before renaming a file a journal names)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class NotText(OSError):
    """Bytes that are not UTF-8 text; ``strerror`` names the offending byte and its offset in the file."""


TEXT_BLOCK = 1 << 16  # bytes read at a time: a text of any length streams in constant memory
_LONG_LINE = 1 << 20  # characters: a longer line is cut before an ASCII character (never part of a composition)
_HUGE_LINE = 1 << 24


def text_blocks(stream: BinaryIO, name: str, block: int = TEXT_BLOCK) -> Iterator[str]:
    """The UTF-8 text of ``stream`` (a BOM dropped) in pieces that end at line breaks, so that lines stay
    whole and Unicode normalisation piece by piece equals normalising the whole.

    A byte that is not UTF-8 raises ``NotText`` naming its offset in the file, not in the piece being decoded.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    consumed = 0  # bytes handed to the decoder so far
    pending = ""
    while True:
        data = stream.read(block)
        buffered = len(decoder.getstate()[0])
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            offset = consumed - buffered + e.start
            bad = e.object[e.start:e.start + 1].hex() if isinstance(e.object, (bytes, bytearray)) else "?"
            raise NotText(errno.EILSEQ, f"not UTF-8 text: byte 0x{bad} at offset {offset:,} ({e.reason})",
                          name) from None
        consumed += len(data)
        pending += text
        cut = pending.rfind("\n") + 1
        if not cut and len(pending) > _LONG_LINE:
            cut = next((i for i in range(len(pending) - 1, 0, -1) if pending[i] < "\x80"), 0)
            if not cut and len(pending) > _HUGE_LINE:  # no ASCII in 16M characters: memory comes first
                cut = len(pending)
        if not data:
            if pending:
                yield pending
            return
        if cut:
            yield pending[:cut]
            pending = pending[cut:]


def read_text(path: str | os.PathLike[str], limit: int) -> str:
    """The whole UTF-8 text of a regular file of at most ``limit`` bytes (``NotText`` at the bad byte's offset)."""
    return "".join(text_blocks(io.BytesIO(read_regular(path, limit)), str(path)))
