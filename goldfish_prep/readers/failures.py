"""A file that cannot be read to its end becomes one ``InputError``, not a crash.

The readers raise what the OS, pyarrow or the decompressor raise; the dispatch
in ``readers/__init__.py`` turns it into an error item here, after the records
read before the failure, and goes on with the next input. ``reason`` keys:
``unreadable-file`` (the OS refused), ``truncated-file`` (compressed data ends
early), ``corrupt-file`` (bytes that do not decode as the format says).
"""

from __future__ import annotations

from goldfish_prep.errors import InputError


def file_failure(path: str, exc: BaseException, records_read: int) -> InputError:
    """The error item for ``path`` after ``records_read`` items came out of it.

    >>> file_failure("a.jsonl.gz", OSError("Truncated compressed stream"), 12).reason
    'truncated-file'
    >>> str(file_failure("a.txt", PermissionError(13, "Permission denied"), 0))
    'a.txt: cannot read the file: Permission denied. Check the path and its permissions'
    """
    if isinstance(exc, InputError):
        return exc
    after = f" after {records_read} record{'s' if records_read != 1 else ''}" if records_read else ""
    if isinstance(exc, OSError) and exc.errno is not None:
        return InputError(
            path, f"cannot read the file{after}: {exc.strerror or exc}", "Check the path and its permissions", "unreadable-file"
        )
    message = str(exc).strip().rstrip(".") or type(exc).__name__
    if "truncated" in message.lower() or isinstance(exc, EOFError):
        return InputError(
            path,
            f"the compressed data ends early{after} (an interrupted download or write?)",
            "Download or write the file again; the records before the break were read",
            "truncated-file",
        )
    return InputError(
        path,
        f"the file is corrupt or not in the format its name says{after}: {message}",
        "Check the file, or give it the suffix of its real format",
        "corrupt-file",
    )
