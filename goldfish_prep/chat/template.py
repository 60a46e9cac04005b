"""The model's own chat template: where it comes from, and a Jinja environment that renders it as transformers does.

Where a template comes from (the first that exists): ``--chat-template
FILE.jinja``; ``chat_template.jinja`` in the tokenizer folder (or beside a
``tokenizer.json``); ``"chat_template"`` in ``tokenizer_config.json`` (a
string, or a list of named templates, of which ``default`` is taken). That is
transformers' order, so ``apply_chat_template`` renders the same template.

The environment has the semantics of transformers' (``utils/chat_template_utils``):
a sandbox, ``trim_blocks`` and ``lstrip_blocks``, loop controls
(``break``/``continue``), ``raise_exception``, ``strftime_now``, a ``tojson``
filter that does not escape HTML and keeps non-ASCII text, ``dict`` and
``namespace``, and the ``{% generation %}`` block, whose character span in the
output is recorded. It is written here rather than borrowed from transformers
so a worker process renders without importing transformers (about 2 s each).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goldfish_prep.errors import ConfigError
from goldfish_prep.tokenizers.optional import import_for

TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A template's text and where it was read, as the manifest records them."""

    text: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def has_generation_block(self) -> bool:
        return compile_template(self.text).has_generation


def find_chat_template(tokenizer_spec: str, template_file: str | None) -> ChatTemplate:
    """The template for ``tokenizer_spec``, or a ``ConfigError`` saying how to give one.

    >>> find_chat_template("cl100k_base", None)
    Traceback (most recent call last):
    ...
    goldfish_prep.errors.ConfigError: tokenizer 'cl100k_base' has no chat template, so conversations cannot be rendered. Fix: pass the model's HF tokenizer folder (its tokenizer_config.json or chat_template.jinja holds the template) with --tokenizer, or a template with --chat-template FILE.jinja
    """
    if template_file is not None:
        path = Path(template_file)
        try:
            return ChatTemplate(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--chat-template {template_file}: cannot read it ({exc}). Fix: pass a readable UTF-8 Jinja file") from exc
    spec = Path(tokenizer_spec).expanduser()
    folder = spec if spec.is_dir() else spec.parent if spec.is_file() and spec.suffix == ".json" else None
    if folder is not None:
        if (folder / TEMPLATE_FILE).is_file():
            return ChatTemplate((folder / TEMPLATE_FILE).read_text(encoding="utf-8"), str(folder / TEMPLATE_FILE))
        text = _template_in_config(folder / CONFIG_FILE)
        if text is not None:
            return ChatTemplate(text, f"{folder / CONFIG_FILE} chat_template")
    raise ConfigError(
        f"tokenizer {tokenizer_spec!r} has no chat template, so conversations cannot be rendered. "
        "Fix: pass the model's HF tokenizer folder (its tokenizer_config.json or chat_template.jinja holds the template) "
        "with --tokenizer, or a template with --chat-template FILE.jinja"
    )


def _template_in_config(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the tokenizer loader names a broken config
    value = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(value, list):  # [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
        named = {entry.get("name"): entry.get("template") for entry in value if isinstance(entry, dict)}
        value = named.get("default")
    return value if isinstance(value, str) else None


class Compiled:
    """A compiled template and its ``render`` that returns the text and the generation spans."""

    def __init__(self, text: str) -> None:
        jinja2 = import_for("jinja2", "hf", "rendering a chat template")  # the first use of Jinja2: checked, one line if missing

        environment = _environment()
        try:
            self._template = environment.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"the chat template does not compile: {exc.message} (template line {exc.lineno}). Fix: correct the template"
            ) from exc
        self.has_generation = _GENERATION_TAG.search(text) is not None

    def render(self, variables: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and the (start, end) character spans of its ``{% generation %}`` blocks."""
        blocks: list[str] = []
        spans: list[tuple[int, int]] = []
        _TRACKER.append((blocks, spans))
        try:
            for block in self._template.generate(**variables):
                blocks.append(block)  # noqa: PERF402 -- the generation extension reads the list while it grows
        finally:
            _TRACKER.pop()
        return "".join(blocks), spans


#: The (blocks so far, spans) of the render in progress; a stack so a render inside a render stays right.
_TRACKER: list[tuple[list[str], list[tuple[int, int]]]] = []


@functools.lru_cache(maxsize=8)
def compile_template(text: str) -> Compiled:
    """The compiled template, cached per process (``ConfigError`` if it does not compile)."""
    return Compiled(text)


def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: renders its body and records the body's span in the output."""

        tags = {"generation"}  # noqa: RUF012 -- the attribute Jinja reads

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_generation"), [], [], body).set_lineno(lineno)

        def _generation(self, caller: Callable[[], str]) -> str:
            body = caller()
            if _TRACKER:
                # the body is not yielded yet: it starts where the text yielded so far ends
                blocks, spans = _TRACKER[-1]
                start = sum(map(len, blocks))
                spans.append((start, start + len(body)))
            return body

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals.update(
        raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_TemplateDict(), namespace=_namespace_class()
    )
    return environment


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: tuple[str, str] | None = None, sort_keys: bool = False
) -> str:
    """JSON as ``json.dumps`` writes it: Jinja's own ``tojson`` would escape ``<``, ``>``, ``&`` and ``'`` for HTML."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.datetime.now().strftime(format)


class _TemplateDict:
    """``dict(...)`` and ``dict.fromkeys`` in a template, without handing it the ``dict`` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


@functools.cache
def _namespace_class() -> type:
    """Jinja's ``namespace`` refusing underscore names, so a template cannot reach Python internals through it."""
    import jinja2.exceptions
    import jinja2.utils

    def check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a chat template cannot store the underscore attribute {name!r} on a namespace")

    class Namespace(jinja2.utils.Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attributes = dict(*rest, **kwargs)
            for name in attributes:
                check(name)
            jinja2.utils.Namespace.__init__(self, attributes)

        def __setitem__(self, name: str, value: Any) -> None:
            check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    return Namespace
