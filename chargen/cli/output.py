"""stdout that fails as one line: a full disk (``> /dev/full``) or a closed stdout (``>&-``) is an error, not a traceback."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from chargen.errors import ChargenError


class OutputError(ChargenError):
    """The command's output (stdout) could not be written."""


class _Closed:
    """Stands in for a stdout the shell closed: Python sets ``sys.stdout`` to None then."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "stdout is closed")

    def flush(self) -> None: ...

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "stdout is closed")


class GuardedStdout:
    """Delegates to the real stdout; an OSError while writing becomes an OutputError (EPIPE is left to
    click, which exits quietly when a reader such as ``head`` closes the pipe)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _failed(e, self._stream) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _failed(e, self._stream) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _failed(e: OSError, stream: Any) -> OutputError:
    if stream is sys.__stdout__:
        _discard_pending_output()
    reason = e.strerror or str(e)
    return OutputError(f"cannot write the output to stdout: {reason}")


def _discard_pending_output() -> None:
    """Point fd 1 at /dev/null so that the text still buffered is not written (and fails) again at exit."""
    real: TextIO | None = sys.__stdout__
    try:
        if real is not None and real.fileno() == 1:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
    except (OSError, ValueError):
        pass


def output_failed(e: OSError) -> None:
    """An OSError from writing help or the version (outside any command): one line and exit 1, if it
    is one a full or closed output gives; anything else is raised again."""
    if e.errno not in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT, errno.EBADF):
        raise e
    _give_up_on_stdout(e)


def _give_up_on_stdout(e: OSError) -> None:
    """Drop what stdout still holds, say why on stderr (if it can take it) and exit 1."""
    _discard_pending_output()
    try:
        sys.stderr.write(f"error: cannot write the output to stdout: {e.strerror or e}\n")
    except (OSError, AttributeError):
        pass
    raise SystemExit(1) from None


def flush_stdout() -> None:
    """At exit: stdout that cannot take the last of its text is one error line and exit 1, not
    Python's "Exception ignored" message and exit 120."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.flush()
    except BrokenPipeError:
        _discard_pending_output()  # the reader left (``| head``): nothing to say
    except OSError as e:
        _give_up_on_stdout(e)


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """While a command runs, writes to stdout that fail raise OutputError; the output is flushed at the end."""
    previous = sys.stdout
    sys.stdout = GuardedStdout(previous if previous is not None else _Closed())  # type: ignore[assignment]
    try:
        yield
        sys.stdout.flush()
    finally:
        sys.stdout = previous
