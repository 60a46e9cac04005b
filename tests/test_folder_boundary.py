"""Only ``format/`` touches output folders: no other module opens, renames, memory-maps or lists files itself.

The commit protocol, the lock to come and checksum checks can then change in
one place (docs/format.md, "The folder object and the commit protocol"). Input
readers are exempt (``readers/``, tokenizer files and their cache in
``tokenizers/``, a chat template file): they read the user's inputs, not an
output folder. The few other calls left are listed in ``ALLOWED`` with why;
a new one fails this test until it goes through ``format/`` or is listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: calls that read, write, rename or list files: the builtin ``open`` and these attribute calls
FILE_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "iterdir", "glob", "rglob", "tofile", "memory_map", "memmap"}
OS_FUNCTIONS = {"replace", "rename", "listdir", "scandir", "walk"}
EXEMPT = ("goldfish_prep/format/", "goldfish_prep/readers/", "goldfish_prep/tokenizers/", "goldfish_prep/chat/template.py")
#: file -> calls allowed there, and why
#: (input hashes come from the readers' own pass, readers/snapshot.py)
ALLOWED: dict[str, int] = {
    # the compiled robust scan's machine-code cache in $GOLDFISH_PREP_CACHE, not an output folder
    # (written through format/commit.py; a damaged entry fails its sha256 and is rebuilt)
    "goldfish_prep/strategies/robust_llvm.py": 1,
}


def file_calls(path: Path) -> list[str]:
    """``line: call`` for every direct file-system call in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            found.append(f"{node.lineno}: open(")
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if func.attr in FILE_METHODS or (owner == "os" and func.attr in OS_FUNCTIONS) or (owner == "glob" and func.attr == "glob"):
                found.append(f"{node.lineno}: .{func.attr}(")
    return found


def outside_calls() -> dict[str, list[str]]:
    calls = {}
    for path in sorted([*ROOT.joinpath("goldfish_prep").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if not name.startswith(EXEMPT) and (found := file_calls(path)):
            calls[name] = found
    return calls


def test_no_module_outside_format_touches_files_itself() -> None:
    calls = outside_calls()
    unexpected = {name: found for name, found in calls.items() if len(found) != ALLOWED.get(name, 0)}
    assert not unexpected, "\n".join(f"{name}: {found}" for name, found in unexpected.items())
    assert sum(len(found) for found in calls.values()) == sum(ALLOWED.values())


def test_the_check_sees_each_kind_of_call(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os, glob\nimport pyarrow as pa\nfrom pathlib import Path\n"
        "open('x')\nos.replace('a', 'b')\npa.memory_map('s')\nos.listdir('.')\nPath('.').iterdir()\n"
        "Path('.').glob('*')\nglob.glob('*')\nPath('x').write_text('')\n",
        encoding="utf-8",
    )
    assert len(file_calls(module)) == 8
