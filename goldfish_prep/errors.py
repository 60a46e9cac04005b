"""Exception types that the CLI turns into one-line ``Error:`` messages.

Library code never calls ``sys.exit`` or prints: it raises one of these, and the
single error boundary in the CLI renders ``str(exc)``. Each type subclasses the
built-in it resembles so callers can catch it either way (as HF datasets'
``exceptions.py`` does).
"""

from __future__ import annotations


class GoldfishError(Exception):
    """Base of every error a user can act on. ``str()`` is the whole message."""


class ConfigError(GoldfishError, ValueError):
    """An option or a combination of options is invalid."""


class InputError(GoldfishError, ValueError):
    """A bad input file or record.

    ``location`` names the file and the line or record (``data.jsonl line 17``),
    ``cause`` what is wrong, ``fix`` what the user can do about it. ``reason`` is
    a short stable key (``invalid-json``) used to count skipped records.
    """

    def __init__(self, location: str, cause: str, fix: str = "", reason: str = "bad-record") -> None:
        self.location = location
        self.cause = cause
        self.fix = fix
        self.reason = reason
        message = f"{location}: {cause}" if location else cause
        if fix:
            message += f". {fix}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str, str, str]]:
        # keep the structured fields when the error crosses a process boundary
        return (type(self), (self.location, self.cause, self.fix, self.reason))


class TokenizerError(GoldfishError, ValueError):
    """A tokenizer could not be found, loaded or used."""


class OutputError(GoldfishError, OSError):
    """The output folder cannot be written as asked."""


class VerifyError(GoldfishError, ValueError):
    """Shards do not match their manifest or their recorded mask config."""


class WorkerError(GoldfishError, RuntimeError):
    """A worker process died (killed, most often for lack of memory) before it returned its result."""
