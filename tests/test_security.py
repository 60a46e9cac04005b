"""What goldfish-prep must never do: reach the network unasked, run code it was handed, unpickle data,
or write outside the output folder.

The network tests run the real command in a subprocess whose ``sitecustomize`` refuses every
internet socket and logs each attempt, with hub access *allowed* by the environment: only
naming a hub resource may lead to a connection. The code-execution and pickle rules are
checked on the package's syntax tree (every ``trust_remote_code=`` is ``False``; no pickle
loader is imported) and on a hostile tokenizer folder whose custom code would leave a mark.
The output tests plant links named like goldfish-prep's own files that point outside, and
watch every file around the output folder.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "goldfish_prep").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py"))

NO_INTERNET = textwrap.dedent(
    """
    # Installed by tests/test_security.py: refuse internet sockets and DNS, log every attempt.
    import os, socket, traceback

    _LOG = os.environ["GOLDFISH_NETWORK_LOG"]

    def _refuse(what):
        with open(_LOG, "a") as log:
            log.write(what + "\\n" + "".join(traceback.format_stack(limit=12)) + "\\n")
        raise OSError(101, "network is unreachable (blocked by tests/test_security.py)")

    _connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(f"connect {address!r}")
        return _connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        _refuse(f"getaddrinfo {host!r}")

    socket.socket.connect = connect
    socket.socket.connect_ex = connect
    socket.getaddrinfo = getaddrinfo
    """
)


def guarded_env(tmp_path: Path, hub_offline: bool = False) -> tuple[dict[str, str], Path]:
    """An environment whose interpreters cannot reach the internet, with the hub *allowed*; and the attempts log."""
    guard = tmp_path / "no-internet"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_INTERNET, encoding="utf-8")
    log = tmp_path / "network-attempts.log"
    log.write_text("")
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")])), GOLDFISH_NETWORK_LOG=str(log))
    if hub_offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env, log


def run_without_internet(tmp_path: Path, *args: object, hub_offline: bool = False) -> tuple[subprocess.CompletedProcess[str], str]:
    """``goldfish-prep ARGS`` in a subprocess (workers included) that cannot reach the internet; and its attempts."""
    env, log = guarded_env(tmp_path, hub_offline)
    command = [sys.executable, "-m", "goldfish_prep_cli", *(str(a) for a in args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return result, log.read_text()


def write_corpus(folder: Path) -> Path:
    path = folder / "corpus.jsonl"
    docs = [f"Document {i}: local text that needs nothing from the internet to be masked. " * 5 for i in range(40)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def write_hf_tokenizer(path: Path) -> Path:
    """A tiny word-level tokenizer.json made in-process (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for i in range(40) for w in f"Document {i}: local text that needs nothing from the internet to be masked.".split()})
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


# ----------------------------------------------------------------------------- network


def test_the_guard_refuses_and_logs_a_connection(tmp_path: Path) -> None:
    """The guard itself works, so an empty log below means no attempt, not a blind guard."""
    env, log = guarded_env(tmp_path)
    probe = (
        "import socket\ntry:\n    socket.create_connection(('example.org', 80), timeout=1)\nexcept OSError as e:\n    print('refused', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert "refused" in result.stdout, result.stderr
    assert "getaddrinfo 'example.org'" in log.read_text()


@pytest.mark.parametrize("tokenizer", ["default", "tokenizer.json"])
def test_local_runs_open_no_internet_connection_even_with_the_hub_allowed(tmp_path: Path, tokenizer: str) -> None:
    corpus = write_corpus(tmp_path)
    options = [] if tokenizer == "default" else ["--tokenizer", write_hf_tokenizer(tmp_path / "tokenizer.json")]
    result, attempts = run_without_internet(tmp_path, "mask", corpus, "-o", tmp_path / "out", "-q", "--num-proc", "2", *options)
    assert result.returncode == 0, result.stderr
    assert attempts == "", f"a local run tried the network:\n{attempts}"
    for command in (["verify", tmp_path / "out", "-q"], ["stats", tmp_path / "out"]):
        checked, attempts = run_without_internet(tmp_path, *command)
        assert checked.returncode == 0, checked.stderr
        assert attempts == "", f"`{command[0]}` tried the network:\n{attempts}"


def test_a_named_hub_dataset_without_network_fails_with_one_line(tmp_path: Path) -> None:
    """Naming a hub resource is what allows a connection; when there is none, one Error line and nothing written.

    Even under ``--on-error skip``: an unreachable hub is the surroundings failing, like a full
    disk, not a bad record; counting the whole dataset as one skipped record would finish a run
    of 0 documents with exit code 0. (The hub client retries with backoff, about 25 s of
    sleeping; a hub *tokenizer* tries several files and takes twice that, so only the dataset
    is tested here.)
    """
    result, attempts = run_without_internet(tmp_path, "mask", "someone/some-dataset", "-o", tmp_path / "out", "-q", "--on-error", "skip")
    assert attempts, "naming a hub dataset should have tried the hub"
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: someone/some-dataset"), result.stderr
    assert not (tmp_path / "out" / "goldfish_manifest.json").exists()


def test_hub_offline_refuses_a_hub_name_without_trying(tmp_path: Path) -> None:
    result, attempts = run_without_internet(tmp_path, "mask", "someone/some-dataset", "-o", tmp_path / "out", "-q", hub_offline=True)
    assert result.returncode == 1 and result.stderr.startswith("Error: someone/some-dataset: "), result.stderr
    assert attempts == ""


# ----------------------------------------------------------------------------- code execution and pickle


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_trust_remote_code_is_never_anything_but_false() -> None:
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("trust_remote_code", None):
                if node.arg is None:  # **options could smuggle it in
                    if isinstance(node.value, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == "trust_remote_code" for k in node.value.keys
                    ):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno} passes trust_remote_code in **kwargs")
                    continue
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno} trust_remote_code={ast.unparse(node.value)}")
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "trust_remote_code"
                        and not (isinstance(value, ast.Constant) and value.value is False)
                    ):
                        offenders.append(f"{path.relative_to(ROOT)}:{key.lineno} dict sets trust_remote_code")
    assert not offenders, "\n".join(offenders)


PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


#: pickles only messages between ``mask`` and the workers it forked, through pipes and memory
#: that only they hold (what ``multiprocessing`` itself does); it opens no file
IPC_ONLY = {"goldfish_prep/pipeline/_channel.py"}


def test_no_pickle_for_data() -> None:
    """Data and checkpoints load without pickle: no pickle module, np.load never allow_pickle, torch.load weights_only."""
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        if where.as_posix() in IPC_ONLY:
            assert not [c for c in _calls(tree) if _name(c.func) in ("open", "io.open", "Path", "pathlib.Path")], where
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                offenders += [f"{where}:{node.lineno} import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                offenders.append(f"{where}:{node.lineno} from {node.module} import ...")
        for call in _calls(tree):
            name = _name(call.func)
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith("read_pickle") or name.endswith("from_pickle"):
                offenders.append(f"{where}:{call.lineno} {name}")
            if name in ("np.load", "numpy.load") and "allow_pickle" in keywords:
                allow = keywords["allow_pickle"]
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    offenders.append(f"{where}:{call.lineno} np.load(allow_pickle=...)")
            if name == "torch.load":
                weights_only = keywords.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    offenders.append(f"{where}:{call.lineno} torch.load without weights_only=True")
    assert not offenders, "\n".join(offenders)


def test_a_tokenizer_folder_with_custom_code_is_refused_not_run(tmp_path: Path) -> None:
    """A folder whose config asks for its own Python class: refused with one line, and its code never runs."""
    folder = tmp_path / "hostile-tokenizer"
    folder.mkdir()
    write_hf_tokenizer(folder / "tokenizer.json")
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\nfrom transformers import PreTrainedTokenizerFast as EvilTokenizer\n"
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": [None, "evil.EvilTokenizer"]}, "tokenizer_class": "EvilTokenizer"})
    )
    result = CliRunner().invoke(cli, ["mask", str(write_corpus(tmp_path)), "-o", str(tmp_path / "out"), "-q", "--tokenizer", str(folder)])
    assert not marker.exists(), "the tokenizer folder's code was executed"
    if result.exit_code == 0:  # loading the tokenizer.json alone, ignoring the custom class, is safe too
        return
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output


# ----------------------------------------------------------------------------- the output folder


def snapshot(folder: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every link) under ``folder``, except under ``skip``."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            state[str(path)] = f"link -> {os.readlink(path)}"
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[str(path)] = "folder"
    return state


def mask(*args: object) -> Result:
    return CliRunner().invoke(cli, ["mask", *(str(a) for a in args), "-q"])


def test_nothing_outside_the_output_folder_changes(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    out = tmp_path / "sub" / ".." / "out"  # an unresolved path: written to tmp_path/out
    before = snapshot(tmp_path, tmp_path / "out")
    result = mask(corpus, "-o", out, "--num-proc", "2", "--shard-size", "1KB")
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, tmp_path / "out") == before
    assert len(list((tmp_path / "out").glob("data-*.arrow"))) > 3
    manifest = (tmp_path / "out" / "goldfish_manifest.json").read_text()
    assert ".." not in manifest


@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_planted_links_never_lead_writes_outside(tmp_path: Path, mode: str) -> None:
    """Links named like goldfish-prep's files, pointing at files outside: removed, their targets untouched."""
    corpus = write_corpus(tmp_path)
    out = tmp_path / "out"
    assert mask(corpus, "-o", out, "--shard-size", "1KB").exit_code == 0
    victims = tmp_path / "victims"
    victims.mkdir()
    names = ["data-00001.arrow.partial", "data-00099.arrow", "state.json", "goldfish_manifest.json", "dataset_info.json"]
    for name in names:
        (victims / name).write_text(f"precious {name}")
        target = out / name
        target.unlink(missing_ok=True)
        target.symlink_to(victims / name)
    (victims / "progress").mkdir()
    (victims / "progress" / "shard-00000.json").write_text("precious record")
    (out / ".goldfish" / "shard-00001.json").unlink()
    (out / ".goldfish" / "shard-00001.json").symlink_to(victims / "progress" / "shard-00000.json")
    before = snapshot(victims, victims / "none")
    result = mask(corpus, "-o", out, "--shard-size", "1KB", mode)
    assert snapshot(victims, victims / "none") == before, "a file outside the output folder was changed"
    assert result.exit_code == 0, result.output
    assert not [p for p in out.rglob("*") if p.is_symlink()]


def test_a_planted_progress_folder_link_is_not_followed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    out.mkdir()
    (out / ".goldfish").symlink_to(outside)
    before = snapshot(outside, outside / "none")
    for mode in ("--overwrite", "--resume"):
        result = mask(corpus, "-o", out, mode)
        assert snapshot(outside, outside / "none") == before, f"{mode} wrote through a linked .goldfish folder"
        if result.exit_code == 0:
            assert not (out / ".goldfish").is_symlink()


def test_output_inside_an_input_folder_is_handled_consistently(tmp_path: Path) -> None:
    """Either refused at once, or written and then resumable and replaceable without reading itself back."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus)
    out = corpus / "shards"
    first = mask(corpus, "-o", out)
    if first.exit_code != 0:
        lines = first.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and not out.exists(), first.output
        return
    for mode in ("--resume", "--overwrite"):
        again = mask(corpus, "-o", out, mode)
        assert again.exit_code == 0, f"the first run was accepted but {mode} fails:\n{again.output}"
    counts = json.loads((out / "goldfish_manifest.json").read_text())["counts"]
    assert counts["documents_read"] == 40, "the output folder was read back as an input"
