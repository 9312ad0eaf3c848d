"""Expected failures: every error a user can cause is a ChargenError with a one-line message.

One rule for exit codes: 2 when the command line is wrong by itself, whatever any file holds (an
option out of range, an unknown choice, options that contradict each other); 1 when the command
is well formed but what it reads does not fit (a missing or damaged model, a corpus too short,
text or a language the model does not know); 128 + N when signal N stopped it.
"""

from __future__ import annotations

from collections.abc import Callable


class ChargenError(Exception):
    """A failure the user can fix; the CLI prints ``label: message`` as one line and exits ``exit_code``.

    Messages name the library's parameters (``hidden_size``), as a notebook user calls them; ``params``
    lists the ones a message names, so that the CLI can put its own flags (``--hidden``) in their place.
    A message may mark where it names a parameter as ``{hidden_size}``: ``str()`` shows the name, the
    CLI its flag, and words of the prose that happen to spell a parameter are never touched.
    """

    exit_code = 1
    label = "error"

    def __init__(self, *args: object, params: str | tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.params: tuple[str, ...] = (params,) if isinstance(params, str) else tuple(params)

    def __reduce__(self) -> tuple[object, ...]:  # keep ``params`` across pickling (errors cross processes)
        return type(self), self.args, self.__dict__

    def __str__(self) -> str:
        return self.render(lambda param: param)

    def marks_params(self) -> bool:
        """Whether the message marks the parameters it names (``{param}``) rather than naming them in prose."""
        text = super().__str__()
        return any("{" + param + "}" in text for param in self.params)

    def render(self, name: Callable[[str], str | None]) -> str:
        """The message with each marked parameter ``{param}`` written as ``name(param)`` (itself when None)."""
        text = super().__str__()
        for param in self.params:
            text = text.replace("{" + param + "}", name(param) or param)
        return text


class UsageError(ChargenError):
    """An option value that is out of range or inconsistent with another (exit 2)."""

    exit_code = 2


class CorpusError(ChargenError):
    """A corpus that cannot be found, read, downloaded or verified."""


class ChecksumMismatch(CorpusError):
    """A downloaded or mirrored file whose sha256 is not the registered one."""


class CheckpointError(ChargenError):
    """A checkpoint that is missing, corrupt, of another task or of a newer format, or cannot be saved."""


class VocabularyError(ChargenError):
    """Input the model does not know: characters outside its vocabulary, a language it was not trained on."""


class TrainingError(ChargenError):
    """A training run that cannot go on (non-finite loss, locked run directory)."""


class RunLocked(TrainingError):
    """A run directory that another live process is writing to."""


class RunInterrupted(TrainingError):
    """Training stopped by a signal: Ctrl-C exits 130 and SIGTERM 143, as a shell reports a killed process."""

    label = "interrupted"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return type(self), (str(self), self.signum)
