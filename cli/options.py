"""Click parameter types shared by commands."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from goldfish_prep.format.location import is_folder_url

_Command = TypeVar("_Command", bound=Callable[..., Any])
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class ByteSize(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A size such as ``256MB``, ``1GiB`` or ``500000`` (bytes)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if not match or match.group(2).upper() not in _UNITS:
            self.fail(f"{value!r} is not a size; use a number with an optional unit such as 256MB or 1GiB", param, ctx)
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
        if size < 1:
            self.fail(f"{value!r} must be at least 1 byte", param, ctx)
        return size


class IdList(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """Token ids separated by commas (``128009,128001``); empty for none."""

    name = "IDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            self.fail(
                f"{value!r} is not a list of token ids; write non-negative integers separated by commas, e.g. 128009,128001", param, ctx
            )
        return tuple(int(part) for part in parts)


class DataFolder(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """An output folder of ``mask`` to read: a local path (checked as ``click.Path`` checks it, given as a ``Path``)
    or a URL (``s3://bucket/prefix``, any fsspec URL), kept as the text it is: ``pathlib`` would turn ``s3://``
    into ``s3:/``. The folder itself is checked when it is opened, with the store's own answer."""

    name = "FOLDER"

    def __init__(self, exists: bool = False) -> None:
        self._local = click.Path(exists=exists, file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        if isinstance(value, str) and is_folder_url(value):
            return value
        local: Path = self._local.convert(value, param, ctx)
        return local


def parse_storage_options(value: str | None) -> dict[str, Any] | None:
    """``--storage-options``: the parsed JSON object; the message never repeats the value, which may hold secrets."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at character {exc.pos}); pass one object, e.g. '{{\"anon\": true}}'") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"must be a JSON object of fsspec options, got a JSON {type(parsed).__name__}")
    return parsed


def _use_storage_options(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from goldfish_prep.readers.remote import use_storage_options

    use_storage_options(parse_storage_options(value))  # also when absent: nothing is left from an earlier command


def storage_options(command: _Command) -> _Command:
    """``--storage-options`` for a command that reads an output folder: applied while the options are parsed, for
    every URL the command opens (``readers.remote``'s file systems, one set per command)."""
    option = click.option(
        "--storage-options",
        metavar="JSON",
        default=None,
        expose_value=False,
        callback=_use_storage_options,
        help="For a folder by URL (s3://, gs://, az://, hf://, any fsspec URL): fsspec options as a JSON object, e.g. "
        "'{\"anon\": true}'. Credentials otherwise come from the provider's own chain (AWS_* variables, profiles, roles).",
    )
    return option(command)
