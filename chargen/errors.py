"""Expected failures: every error a user can cause is a ChargenError with a one-line message."""

from __future__ import annotations


class ChargenError(Exception):
    """A failure the user can fix; the CLI prints its message as one line and exits 1."""

    exit_code = 1


class UsageError(ChargenError):
    """An option value that is out of range or inconsistent with another (exit 2)."""

    exit_code = 2


class CorpusError(ChargenError):
    """A corpus that cannot be found, read, downloaded or verified."""


class ChecksumMismatch(CorpusError):
    """A downloaded or mirrored file whose sha256 is not the registered one."""


class CheckpointError(ChargenError):
    """A checkpoint that is missing, corrupt, of another task or of a newer format."""


class VocabularyError(ChargenError):
    """Text with characters the model's vocabulary does not contain."""


class TrainingError(ChargenError):
    """A training run that cannot go on (non-finite loss, locked run directory)."""
