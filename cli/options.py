"""Click parameter types shared by commands."""

from __future__ import annotations

import re
from typing import Any

import click

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
