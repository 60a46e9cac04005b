"""Each command that needs an extra, run without it: one ``Error:`` line naming the extra, never a traceback.

A new user starts from ``pip install -e .`` (no extras) and learns what is missing from the first error, so
every optional import must be checked before its first use. Here each command runs in a real process in
which the optional packages are absent as they are from a base install: every import finder is wrapped
so that it finds neither the modules nor their distribution metadata (``import x`` raises
ModuleNotFoundError, ``find_spec`` gives None, ``importlib.metadata.version`` raises), so a check by any of
those means sees what a fresh venv would show.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldfish_prep_cli.main import cli
from tests.conftest import LICENSE_FILES

#: every package an extra brings (pyproject's optional-dependencies, test extra aside), by import name
OPTIONAL = ("tokenizers", "transformers", "jinja2", "google.protobuf", "sentencepiece", "bpe_openai", "torch", "matplotlib", "ray")

SHIM = """
import sys
hidden = tuple(sys.argv[1].split(","))


def _hidden(name):
    name = name.lower().replace("-", "_")
    return any(name == h or name.startswith(h + ".") for h in hidden)


class _Without:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        find = getattr(self.finder, "find_spec", None)
        return None if _hidden(name) or find is None else find(name, path, target)

    def find_distributions(self, *args, **kwargs):
        find = getattr(self.finder, "find_distributions", None)
        return [d for d in (find(*args, **kwargs) if find else ()) if not _hidden(d.metadata["Name"] or "")]

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()


sys.meta_path[:] = [_Without(finder) for finder in sys.meta_path]
for name in [name for name in sys.modules if _hidden(name)]:
    del sys.modules[name]
if sys.argv[2] == "--probe":
    import importlib.metadata, importlib.util
    for name in sys.argv[3:]:
        try:
            __import__(name)
            print(name, "imported")
        except ModuleNotFoundError:
            print(name, "missing", importlib.util.find_spec(name))
    try:
        importlib.metadata.version("tokenizers")
        print("metadata found")
    except importlib.metadata.PackageNotFoundError:
        print("metadata missing")
    raise SystemExit(0)
from goldfish_prep_cli.main import cli
cli(sys.argv[2:], prog_name="goldfish-prep")
"""


def run_without(hidden: tuple[str, ...], *args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``goldfish-prep ARGS`` in a fresh process in which the packages ``hidden`` are not installed."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "GOLDFISH_PREP_CACHE": str(cwd / "cache")}
    environment.update(env or {})
    command = [sys.executable, "-c", SHIM, ",".join(hidden), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def the_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error:`` line of a failed command (and proof that it is the only one, with no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and done.stderr.rstrip("\n").splitlines()[-1] == errors[0], done.stderr
    return errors[0]


def fix(extra: str) -> str:
    return f"Fix: pip install 'goldfish-prep[{extra}]'"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs, tokenizers of each kind, and shards made with them (with every extra installed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("first-hour")
    texts = [Path(path).read_text(encoding="utf-8") for path in LICENSE_FILES[:4]] or ["a small text, said twice. " * 50]
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    chat = {"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello there, friend."}]}
    (root / "chats.jsonl").write_text(json.dumps(chat) + "\n", encoding="utf-8")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(root / "tok.json"))
    folder = root / "tokdir"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    template = "{% for m in messages %}<s>{{ m['role'] }}: {% generation %}{{ m['content'] }}{% endgeneration %}</s>{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": template}))
    (root / "sp.model").write_bytes((importlib.resources.files("mistral_common") / "data" / "tokenizer.model.v1").read_bytes())
    (root / "spdir").mkdir()  # a SentencePiece model with its config: transformers converts it, with sentencepiece and protobuf
    (root / "spdir" / "tokenizer.model").write_bytes((root / "sp.model").read_bytes())
    (root / "spdir" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    (root / "hf-model").mkdir()
    (root / "hf-model" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    os.environ["GOLDFISH_PREP_CACHE"] = str(root / "cache")  # the shards below fill the fast path's cache, as a first run would
    try:
        for name, spec in (("s-cl", "cl100k_base"), ("s-json", str(root / "tok.json")), ("s-sp", str(root / "sp.model"))):
            result = CliRunner().invoke(cli, ["mask", str(root / "corpus.jsonl"), "-o", str(root / name), "--tokenizer", spec, "-q"])
            assert result.exit_code == 0, result.output
    finally:
        del os.environ["GOLDFISH_PREP_CACHE"]
    return root


def test_the_shim_hides_modules_as_a_base_install_lacks_them(work: Path) -> None:
    done = run_without(("tokenizers",), "--probe", "tokenizers", "json", cwd=work)
    assert done.stdout.splitlines() == ["tokenizers missing None", "json imported", "metadata missing"], done.stderr


NEEDS_AN_EXTRA = {
    "tokenizer.json": (
        ("tokenizers",),
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "tok.json"],
        "Error: tokenizer 'tok.json' needs the Python package 'tokenizers', which is not installed. " + fix("hf"),
    ),
    "tokenizer folder": (
        OPTIONAL,
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "tokdir"],
        "Error: tokenizer 'tokdir' needs the Python package 'tokenizers', which is not installed. " + fix("hf"),
    ),
    "tokenizer folder, transformers missing": (
        ("transformers",),
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "tokdir"],
        "Error: tokenizer 'tokdir' needs the Python package 'transformers', which is not installed. " + fix("hf"),
    ),
    "hub id": (
        OPTIONAL,
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "some-org/some-model"],
        "Error: tokenizer 'some-org/some-model' needs the Python package 'transformers', which is not installed. " + fix("hf"),
    ),
    "SentencePiece model": (
        OPTIONAL,
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "sp.model"],
        "Error: tokenizer 'sp.model' needs the Python package 'sentencepiece', which is not installed. " + fix("sentencepiece"),
    ),
    "SentencePiece folder, protobuf missing": (
        ("google.protobuf",),
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "spdir"],
        "Error: tokenizer 'spdir' needs the Python package 'protobuf', which is not installed. " + fix("hf"),
    ),
    "SentencePiece folder, sentencepiece missing": (
        ("sentencepiece",),
        ["mask", "corpus.jsonl", "-o", "out", "--tokenizer", "spdir"],
        "Error: tokenizer 'spdir' needs the Python package 'sentencepiece', which is not installed. " + fix("sentencepiece"),
    ),
    "chat template": (
        ("jinja2",),
        ["mask", "chats.jsonl", "-o", "out", "--tokenizer", "tokdir"],
        "Error: rendering a chat template needs the Python package 'jinja2', which is not installed. " + fix("hf"),
    ),
    "Ray": (
        OPTIONAL,
        ["mask", "corpus.jsonl", "-o", "out", "--ray-address", "local"],
        "Error: --ray-address needs the Python package 'ray', which is not installed. "
        "Fix: pip install 'goldfish-prep[ray]', or run without --ray-address (or split the run with --num-tasks)",
    ),
    "stats --plot": (
        OPTIONAL,
        ["stats", "s-cl", "--plot", "rates.png"],
        "Error: --plot needs the Python package 'matplotlib', which is not installed. " + fix("plot"),
    ),
    "train": (
        OPTIONAL,
        ["train", "s-cl", "-o", "run"],
        "Error: `goldfish-prep train` needs PyTorch, which is not installed. " + fix("train"),
    ),
    "memorization": (
        OPTIONAL,
        ["memorization", "hf-model", "s-cl"],
        "Error: `goldfish-prep memorization` needs PyTorch, which is not installed. " + fix("train"),
    ),
    "memorization of a Hugging Face model": (
        ("transformers",),
        ["memorization", "hf-model", "s-cl", "--device", "cpu"],
        "Error: hf-model: a Hugging Face model folder needs the Python package 'transformers', which is not installed. " + fix("hf"),
    ),
    "repeats --normalized on tokenizer.json shards": (
        OPTIONAL,
        ["repeats", "s-json", "--normalized"],
        "Error: tokenizer '{work}/tok.json' needs the Python package 'tokenizers', which is not installed. " + fix("hf"),
    ),
    "verify --retokenize on SentencePiece shards": (
        OPTIONAL,
        ["verify", "s-sp", "--retokenize", "1"],
        "Error: tokenizer '{work}/sp.model' needs the Python package 'sentencepiece', which is not installed. " + fix("sentencepiece"),
    ),
}


@pytest.mark.parametrize("case", list(NEEDS_AN_EXTRA))
def test_a_command_that_needs_an_extra_names_it_in_one_line(work: Path, case: str) -> None:
    hidden, args, expected = NEEDS_AN_EXTRA[case]
    done = run_without(hidden, *args, cwd=work)
    assert done.returncode == 1, done.stderr
    assert the_error(done) == expected.format(work=work)


def test_a_cold_cache_and_a_warm_one_give_the_same_line(work: Path) -> None:
    """The fast path's cache holds tok.json's answer (the fixture's run); with the cache off, the same error."""
    assert any((work / "cache").iterdir())
    done = run_without(
        ("tokenizers",), "mask", "corpus.jsonl", "-o", "out", "--tokenizer", "tok.json", cwd=work, env={"GOLDFISH_PREP_CACHE": "off"}
    )
    assert done.returncode == 1
    assert the_error(done) == NEEDS_AN_EXTRA["tokenizer.json"][2]


BASE_COMMANDS = {
    "mask": ["mask", "corpus.jsonl", "-o", "base-out", "-q"],
    "stats": ["stats", "s-json"],
    "show": ["show", "s-cl", "--row", "0"],
    "verify": ["verify", "s-cl", "--retokenize", "1"],
    "repeats": ["repeats", "s-sp"],
    "export": ["export", "s-cl", "-o", "olmo", "--format", "olmo"],
}


@pytest.mark.parametrize("command", list(BASE_COMMANDS))
def test_commands_that_need_no_extra_run_without_any(work: Path, command: str) -> None:
    done = run_without(OPTIONAL, *BASE_COMMANDS[command], cwd=work)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_show_without_the_tokenizers_library_shows_ids_and_says_what_to_install(work: Path) -> None:
    done = run_without(OPTIONAL, "show", "s-json", "--row", "0", cwd=work)
    assert done.returncode == 0
    note = f"Note: cannot load tokenizer '{work}/tok.json' here (tokenizer '{work}/tok.json' needs the Python package 'tokenizers'"
    assert done.stderr.startswith(note) and fix("hf") in done.stderr.splitlines()[0], done.stderr


def test_the_readme_install_table_lists_every_extra_and_each_error_names_one(work: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    section = (root / "pyproject.toml").read_text(encoding="utf-8").split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = re.findall(r"^([a-z][a-z0-9-]*) = \[", section, flags=re.MULTILINE)
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert extras and all(f"| `{extra}` |" in readme and f'pip install -e ".[{extra}]"' in readme for extra in extras), extras
    named = {re.search(r"goldfish-prep\[(\w+)\]", expected).group(1) for _, _, expected in NEEDS_AN_EXTRA.values()}  # type: ignore[union-attr]
    assert named <= set(extras), named


def test_transformers_loads_a_tokenizer_folder_without_advice_about_pytorch(work: Path) -> None:
    """transformers logs at import that PyTorch is missing; a tokenizer needs no model, so the user sees nothing."""
    done = run_without(("torch",), "mask", "corpus.jsonl", "-o", "no-torch", "--tokenizer", "tokdir", "-q", cwd=work)
    assert done.returncode == 0 and done.stderr == "", done.stderr
