"""From what the user typed to the ordered list of inputs to read.

Specs are taken in the order given; a folder is walked recursively in sorted
path order and a glob's matches are sorted, so the order of documents, and so
the output bytes, never depend on the file system's listing order. A file
reached twice (named twice, or through a symlink) is read once, where it first
appears. Formats are told by file name (a ``.json`` file is opened to tell an
array from JSON lines). Whatever cannot work however the run goes (a missing
path, an empty glob, a symlink loop, a pipe, device or socket, an explicitly
named file of unknown format) raises ``InputError`` here, before any output is
written; a folder's hidden files and files of unknown formats are listed in
``ignored``.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import re
import stat
from collections.abc import Sequence

from goldfish_prep.errors import InputError
from goldfish_prep.readers.hub import hub_offline, looks_like_hub_id, offline_error
from goldfish_prep.readers.json_array import is_json_array
from goldfish_prep.readers.options import InputSource
from goldfish_prep.readers.remote import expand_url, is_url
from goldfish_prep.readers.streams import COMPRESSIONS

# "json" is not a kind: such a file is sniffed for "json-array" or "jsonl".
_TEXT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "text"}
_COLUMNAR_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow"}
SUPPORTED = ".jsonl, .json, .txt (each plain, .gz or .zst), .parquet, .arrow, a datasets.save_to_disk folder"
_GLOB_CHARS = re.compile(r"[*?[]")
_SAVED_DATASET_FILES = ("state.json", "dataset_info.json")
_DATASET_DICT_FILE = "dataset_dict.json"
_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class ResolvedInputs:
    """The inputs to read, in order, and the folder entries passed over (hidden or of unknown format)."""

    sources: list[InputSource]
    ignored: list[str]


def resolve_inputs(specs: Sequence[str], assume_format: str | None = None) -> ResolvedInputs:
    """Files, folders, globs and hub ids, in the order given, as ``InputSource`` objects.

    ``assume_format`` ("text" or "jsonl") is the format of files whose name does
    not tell it (``LICENSE``, ``copyright``); by default such files are an error
    when named, and ignored (and listed) inside folders.

    >>> resolve_inputs(["no/such/file.jsonl"])
    Traceback (most recent call last):
    ...
    goldfish_prep.errors.InputError: no/such/file.jsonl: no such file or folder. Check the path (relative paths start in the current folder)
    """
    collector = _Collector(assume_format)
    for spec in specs:
        collector.add_spec(spec)
    return ResolvedInputs(collector.sources, collector.ignored)


def names_local_files(spec: str) -> bool:
    """Whether an input spec names something on this machine's disk: a path that exists, or a glob that matches.

    Ray's driver asks it to learn which inputs its nodes must see at the same paths.

    >>> names_local_files("s3://corpus/*.jsonl"), names_local_files("/no/such/file.jsonl"), names_local_files("/")
    (False, False, True)
    """
    path = os.path.expanduser(spec)
    return not is_url(spec) and (os.path.exists(path) or (glob.has_magic(path) and bool(glob.glob(path))))


def kind_from_name(name: str) -> str | None:
    """The reader kind a file name asks for ("json" until sniffed), or None when unknown.

    >>> kind_from_name("a.JSONL.gz"), kind_from_name("b.json"), kind_from_name("c.parquet.gz")
    ('jsonl', 'json', None)
    """
    lower = name.lower()
    compressed = next((s for s in COMPRESSIONS if lower.endswith(s)), "")
    stem = lower[: len(lower) - len(compressed)]
    for suffix, kind in _TEXT_SUFFIXES.items():
        if stem.endswith(suffix):
            return kind
    for suffix, kind in _COLUMNAR_SUFFIXES.items():
        if not compressed and stem.endswith(suffix):
            return kind
    return None


def is_saved_dataset(folder: str) -> bool:
    """Whether ``folder`` was written by ``datasets.Dataset.save_to_disk``."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in _SAVED_DATASET_FILES)


class _Collector:
    """Accumulates sources in order, each file once."""

    def __init__(self, assume_format: str | None = None) -> None:
        self.assume_format = assume_format
        self.sources: list[InputSource] = []
        self.ignored: list[str] = []
        self._seen: set[str] = set()

    def add_spec(self, spec: str) -> None:
        if not spec:
            raise InputError("", "an input path is empty", "Name a file, folder, glob or hub dataset", "missing-input")
        if is_url(spec):
            self._add_urls(spec)
        elif os.path.lexists(spec):
            self._add_path(spec, explicit=True)
        elif _GLOB_CHARS.search(spec):
            self._add_glob(spec)
        elif looks_like_hub_id(spec) and kind_from_name(spec) is None:
            variable = hub_offline()
            if variable is not None:
                raise offline_error(spec, variable)
            self._add(InputSource(spec, "hub", local=False), f"hub:{spec}")
        else:
            raise InputError(spec, "no such file or folder", "Check the path (relative paths start in the current folder)", "missing-input")

    def _add(self, source: InputSource, key: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self.sources.append(source)

    def _add_urls(self, spec: str) -> None:
        """An object, prefix or glob on a store (``remote``): its objects, read and named as local files are."""
        files, hidden, single = expand_url(spec)
        self.ignored.extend(hidden)
        if any(name.endswith("/" + _SAVED_DATASET_FILES[0]) for name in files):
            raise InputError(
                spec,
                "a datasets.save_to_disk folder on a store is not read as one yet",
                "Name its Arrow files (PREFIX/data-*.arrow)",
                "missing-input",
            )
        found = sum(self._add_file(url, explicit=single) for url in files)
        if not found:
            raise InputError(
                files[0] if single else spec,
                f"no input of a known format there (only {_preview(files + hidden)})" if files or hidden else "the prefix holds no object",
                f"Supported: {SUPPORTED}",
                "missing-input",
            )

    def _add_glob(self, pattern: str) -> None:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise InputError(pattern, "the pattern matches no file or folder", "Check the pattern and the current folder", "missing-input")
        found = sum(self._add_path(match, explicit=False) for match in matches)
        if not found:
            raise InputError(
                pattern,
                f"the pattern matches no input of a known format (only {_preview(matches)})",
                f"Supported: {SUPPORTED}",
                "missing-input",
            )

    def _add_path(self, path: str, explicit: bool) -> int:
        """Add a file or folder; return how many inputs it held (duplicates included)."""
        try:
            info = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _loop_error(path) from None
            if not explicit and kind_from_name(path) is not None:
                self._add(InputSource(path, _kind_of(path)), os.path.abspath(path))  # reading reports it
                return 1
            target = f" (a broken link to {os.readlink(path)})" if os.path.islink(path) else ""
            raise InputError(path, f"cannot open{target}: {exc.strerror}", "Check the path", "missing-input") from None
        if stat.S_ISDIR(info.st_mode):
            return self._add_folder(path, explicit, frozenset({(info.st_dev, info.st_ino)}))
        _refuse_special(path, info.st_mode)
        return self._add_file(path, explicit)

    def _add_file(self, path: str, explicit: bool) -> int:
        key, local = (path, False) if is_url(path) else (os.path.realpath(path), True)
        if kind_from_name(os.path.basename(path)) is None and self.assume_format is not None:
            self._add(InputSource(path, self.assume_format, local=local), key)
            return 1
        if kind_from_name(os.path.basename(path)) is None:
            if explicit:
                raise InputError(
                    path,
                    "cannot tell the file's format from its name",
                    f"Supported: {SUPPORTED}; rename the file, or pass --assume-format text (or jsonl)",
                    "unknown-format",
                )
            self.ignored.append(path)
            return 0
        self._add(InputSource(path, _kind_of(path), local=local), key)
        return 1

    def _add_folder(self, folder: str, explicit: bool, ancestors: frozenset[tuple[int, int]]) -> int:
        if explicit and os.path.isfile(os.path.join(folder, _DATASET_DICT_FILE)):
            raise _dataset_dict_error(folder)
        if is_saved_dataset(folder):
            self._add(InputSource(folder, "hf-disk"), os.path.realpath(folder))
            return 1
        ignored_before = len(self.ignored)
        found = self._walk(folder, ancestors)
        if explicit and not found:
            passed_over = self.ignored[ignored_before:]
            shown = f" (it holds only {_preview(passed_over)})" if passed_over else ""
            raise InputError(
                folder,
                f"the folder holds no input files{shown}",
                f"Supported: {SUPPORTED}; for files without such a suffix pass --assume-format text (or jsonl)",
                "missing-input",
            )
        return found

    def _walk(self, folder: str, ancestors: frozenset[tuple[int, int]]) -> int:
        """Add the inputs below ``folder`` in sorted order; ``ancestors`` (device, inode) catch loops."""
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            raise InputError(folder, f"cannot list the folder: {exc.strerror}", "Check its permissions", "unreadable-file") from None
        is_dataset_dict = any(entry.name == _DATASET_DICT_FILE for entry in entries)
        found = 0
        for entry in entries:
            path = entry.name if folder == os.curdir else os.path.join(folder, entry.name)
            if entry.name.startswith(".") or (is_dataset_dict and entry.name == _DATASET_DICT_FILE):
                self.ignored.append(path)
                continue
            try:
                info = entry.stat()
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _loop_error(path) from None
                found += self._add_file(path, explicit=False)  # a broken link: reading reports it
                continue
            if not stat.S_ISDIR(info.st_mode):
                _refuse_special(path, info.st_mode)
                found += self._add_file(path, explicit=False)
            elif (info.st_dev, info.st_ino) in ancestors:
                raise _loop_error(path)
            elif is_saved_dataset(path):
                self._add(InputSource(path, "hf-disk"), os.path.realpath(path))
                found += 1
            else:
                found += self._walk(path, ancestors | {(info.st_dev, info.st_ino)})
        return found


_SPECIAL = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_special(path: str, mode: int) -> None:
    """Refuse anything but a regular file before any work: reading a pipe or a device could block
    forever or never end, and an input must have a size and a hash to be recorded (and re-read by --resume)."""
    if stat.S_ISREG(mode):
        return
    what = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
    raise InputError(
        path,
        f"this is {what}, not a regular file; mask reads inputs from regular files only (it records their size and hash)",
        "Save the data to a file first and mask that file",
        "special-file",
    )


def _kind_of(path: str) -> str:
    kind = kind_from_name(os.path.basename(path))
    assert kind is not None, path
    if kind == "json":
        return "json-array" if is_json_array(path) else "jsonl"
    return kind


def _loop_error(path: str) -> InputError:
    return InputError(
        path,
        f"symbolic link loop: {path} leads back into a folder that contains it ({os.path.realpath(path)})",
        "Remove the link, or name the folders to read one by one",
        "symlink-loop",
    )


def _dataset_dict_error(folder: str) -> InputError:
    splits = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and is_saved_dataset(entry.path))
    example = os.path.join(folder, splits[0] if splits else "train")
    return InputError(
        folder,
        f"this is a DatasetDict folder (splits: {', '.join(splits) or 'none found'}), not one dataset",
        f"Name one split's subfolder, e.g. {example}",
        "dataset-dict",
    )


def _preview(paths: list[str]) -> str:
    shown = ", ".join(paths[:_SHOWN])
    return shown if len(paths) <= _SHOWN else f"{shown} and {len(paths) - _SHOWN} more"
