"""The bundled trainer: loss masking, row sampling, training, checkpoint/resume, DDP, the CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from goldfish_prep.errors import ConfigError
from goldfish_prep.format import IGNORE_INDEX
from goldfish_prep.train.config import TrainConfig
from goldfish_prep.train.data import RowSampler, evaluation_rows, load_shards
from goldfish_prep.train.loss import masked_mean_cross_entropy, summed_cross_entropy
from goldfish_prep.train.model import GPT, preset_config
from goldfish_prep.train.schedule import learning_rate
from goldfish_prep.train.trainer import train
from goldfish_prep_cli.main import cli
from tests.shards import LICENSES, mask_texts, one_thread, train_bpe  # noqa: F401  (one_thread: an autouse fixture, registered by import)

SMALL = {"block_size": 64, "n_layer": 2, "n_embd": 64, "n_head": 2, "batch_size": 4, "device": "cpu"}


def paragraphs(name: str) -> list[str]:
    text = (LICENSES / name).read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 200]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Goldfish (k=4) and standard shards of the Apache licence's paragraphs, and held-out MPL shards."""
    folder = tmp_path_factory.mktemp("corpus")
    tokenizer = str(train_bpe(folder))
    texts = paragraphs("Apache-2.0")
    return {
        "tokenizer": Path(tokenizer),
        "goldfish": mask_texts(folder, "goldfish", texts, "--tokenizer", tokenizer, "--k", "4"),
        "standard": mask_texts(folder, "standard", texts, "--tokenizer", tokenizer, "--strategy", "none"),
        "packed": mask_texts(folder, "packed", texts, "--tokenizer", tokenizer, "--k", "4", "--pack", "100"),
        "heldout": mask_texts(folder, "heldout", paragraphs("MPL-2.0")[:10], "--tokenizer", tokenizer, "--strategy", "none"),
    }


# --- the loss ----------------------------------------------------------------------------------


def test_masked_loss_is_the_mean_over_supervised_targets_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    targets = torch.tensor([[3, IGNORE_INDEX, 7, 1, IGNORE_INDEX], [IGNORE_INDEX, 0, 10, IGNORE_INDEX, 4]])
    by_hand = []
    for b in range(2):
        for t in range(5):
            if targets[b, t] != IGNORE_INDEX:
                by_hand.append(-torch.log_softmax(logits[b, t], dim=-1)[targets[b, t]])
    loss = masked_mean_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(float(torch.stack(by_hand).mean().detach()), abs=1e-6)
    loss.backward()
    assert logits.grad is not None
    dropped = targets == IGNORE_INDEX
    assert torch.all(logits.grad[dropped] == 0)  # a dropped position contributes nothing, not even a gradient
    assert torch.all(logits.grad[~dropped].abs().sum(dim=-1) > 0)


def test_summed_loss_is_computed_in_fp32_from_bf16_logits() -> None:
    logits = torch.randn(1, 4, 9).to(torch.bfloat16)
    targets = torch.tensor([[1, 2, IGNORE_INDEX, 3]])
    assert summed_cross_entropy(logits, targets).dtype == torch.float32


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    rates = [learning_rate(s, max_lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=100) for s in range(120)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == 1.0
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[100] == rates[119] == 0.1


# --- rows --------------------------------------------------------------------------------------


def test_rows_use_every_label_once_per_epoch_with_its_shard_value(corpus: dict[str, Path]) -> None:
    data = load_shards(corpus["goldfish"])
    sampler = RowSampler(data, block_size=64, seed=3)
    inputs, targets = sampler.batch(range(sampler.rows_per_epoch))
    real = targets != IGNORE_INDEX
    # the targets of row r are the stream positions after its inputs: every supervised label once, the same count
    assert int(real.sum()) == sampler.supervised_per_epoch()
    first = int(data.unit_starts[np.random.default_rng([3, 0]).permutation(len(data.unit_starts))[0]])  # the epoch's first unit
    assert int(real.sum()) == int((data.labels != IGNORE_INDEX).sum()) - int(data.labels[first] != IGNORE_INDEX)
    # each (input, target) pair is a consecutive pair of the epoch's stream: target t+1's input is t's target id
    stream_ids = np.concatenate([inputs.reshape(-1), [0]])
    nonpad = real.reshape(-1)
    assert np.array_equal(targets.reshape(-1)[nonpad], stream_ids[1:][nonpad])


def test_row_order_is_deterministic_and_changes_with_seed_and_epoch(corpus: dict[str, Path]) -> None:
    data = load_shards(corpus["goldfish"])
    first = RowSampler(data, 64, seed=0)
    again = RowSampler(data, 64, seed=0)
    other = RowSampler(data, 64, seed=1)
    rows = range(first.rows_per_epoch)
    assert np.array_equal(first.batch(rows)[0], again.batch(rows)[0])
    assert not np.array_equal(first.batch(rows)[0], other.batch(rows)[0])
    next_epoch = range(first.rows_per_epoch, 2 * first.rows_per_epoch)
    assert not np.array_equal(first.batch(rows)[0], first.batch(next_epoch)[0])


def test_packed_shards_train_on_the_same_labels_without_padding(corpus: dict[str, Path]) -> None:
    plain, packed = load_shards(corpus["goldfish"]), load_shards(corpus["packed"])
    assert np.array_equal(np.sort(plain.ids), np.sort(packed.ids))
    assert int((plain.labels == IGNORE_INDEX).sum()) == int((packed.labels == IGNORE_INDEX).sum())


def test_validation_rows_score_every_token_regardless_of_the_mask(corpus: dict[str, Path]) -> None:
    data = load_shards(corpus["goldfish"])
    rows = evaluation_rows(data, 64)
    counted = sum(int((targets != IGNORE_INDEX).sum()) for _, targets in rows)
    assert counted == data.num_tokens - len(data.unit_starts)  # every token but each document's first


# --- training ----------------------------------------------------------------------------------


def run_config(data: Path, run_dir: Path, **options: Any) -> TrainConfig:
    return TrainConfig(data=data, run_dir=run_dir, **{**SMALL, "learning_rate": 3e-3, "warmup_steps": 2, "log_interval": 1, **options})


def test_training_lowers_the_loss_and_reports_supervised_tokens(corpus: dict[str, Path], tmp_path: Path) -> None:
    logged: list[dict[str, Any]] = []
    result = train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=12, eval_data=corpus["heldout"]), logged.append)
    losses = [m["loss"] for m in logged if "loss" in m]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5
    assert result.tokens == 12 * 4 * 64
    assert 0.6 * result.tokens < result.supervised_tokens < 0.9 * result.tokens  # about 1 in 4 dropped after the first 13
    assert result.eval_loss is not None and np.isfinite(result.eval_loss)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "done" and lines[0]["step"] == 1


class Crash(Exception):
    pass


def test_resume_continues_with_the_identical_next_step(corpus: dict[str, Path], tmp_path: Path) -> None:
    straight: list[dict[str, Any]] = []
    train(run_config(corpus["goldfish"], tmp_path / "straight", max_steps=6), straight.append)

    def crash_after_step_3(metrics: dict[str, Any]) -> None:
        if metrics.get("step") == 3:
            raise Crash

    with pytest.raises(Crash):  # checkpoints after steps 1 and 2; step 3 is lost with the crash
        train(run_config(corpus["goldfish"], tmp_path / "resumed", max_steps=6, checkpoint_interval=1), crash_after_step_3)
    resumed: list[dict[str, Any]] = []
    train(run_config(corpus["goldfish"], tmp_path / "resumed", max_steps=6, checkpoint_interval=1, resume=True), resumed.append)
    expected = [(m["step"], m["loss"], m["supervised_tokens"]) for m in straight if "loss" in m][2:]
    assert [(m["step"], m["loss"], m["supervised_tokens"]) for m in resumed if "loss" in m] == expected


def test_resume_of_a_finished_run_reports_its_last_loss(corpus: dict[str, Path], tmp_path: Path) -> None:
    first = train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=2))
    again = train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=2, resume=True))
    assert again.steps == first.steps == 2
    assert again.train_loss == first.train_loss  # not nan: the checkpoint records it


def test_resume_refuses_other_settings_or_other_data(corpus: dict[str, Path], tmp_path: Path) -> None:
    train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=1))
    with pytest.raises(ConfigError, match="differ from the saved run: learning_rate"):
        train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=1, resume=True, learning_rate=1e-4))
    with pytest.raises(ConfigError, match="tokenizer or mask differ from the data the run started on"):
        train(run_config(corpus["standard"], tmp_path / "run", max_steps=1, resume=True))


def test_training_stops_at_the_requested_supervised_tokens(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = train(run_config(corpus["goldfish"], tmp_path / "run", max_supervised_tokens=1000))
    per_step_most = 4 * 64
    assert 1000 <= result.supervised_tokens < 1000 + per_step_most


def test_ddp_code_path_with_one_gloo_process_matches_a_plain_run(
    corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain: list[dict[str, Any]] = []
    train(run_config(corpus["goldfish"], tmp_path / "plain", max_steps=3, grad_accum=2), plain.append)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    distributed: list[dict[str, Any]] = []
    train(run_config(corpus["goldfish"], tmp_path / "ddp", max_steps=3, grad_accum=2), distributed.append)
    assert not torch.distributed.is_initialized()
    assert [m["loss"] for m in distributed if "loss" in m] == pytest.approx([m["loss"] for m in plain if "loss" in m], abs=1e-5)


def test_vocabulary_is_sized_from_the_manifest(corpus: dict[str, Path], tmp_path: Path) -> None:
    train(run_config(corpus["goldfish"], tmp_path / "run", max_steps=1))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (
        state["model_config"]["vocab_size"]
        == json.loads((corpus["goldfish"] / "goldfish_manifest.json").read_text())["tokenizer"]["vocab_size"]
        == 512
    )


def test_model_logits_do_not_depend_on_later_tokens() -> None:
    torch.manual_seed(0)
    model = GPT(preset_config("tiny", 50, block_size=16, n_layer=2)).eval()
    ids = torch.randint(0, 50, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 50
    with torch.no_grad():
        assert torch.allclose(model(ids)[0, :10], model(changed)[0, :10], atol=1e-5)


# --- the command -------------------------------------------------------------------------------


def test_cli_trains_and_refuses_to_mix_runs(corpus: dict[str, Path], tmp_path: Path) -> None:
    args = ["train", str(corpus["goldfish"]), "-o", str(tmp_path / "run"), "--max-steps", "2", "--block-size", "64",
            "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--batch-size", "2", "--device", "cpu", "--log-interval", "1"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert re.search(r"step +2 \| loss \d+\.\d+ \| lr .* tok/s \| supervised \d", first.output)
    assert "for 2 steps: 256 tokens" in first.output
    # said before the first step (on a CPU the first step line can take minutes): the size, the device, the plan
    assert re.fullmatch(r"Training [\d,]+ parameters on cpu: 2 steps, a line every 1 steps", first.output.splitlines()[0])
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'run'} already holds a training run; pass --resume to continue it or --overwrite to start again"
    )
    both = CliRunner().invoke(cli, [*args, "--max-steps", "3", "--epochs", "2"])
    assert both.exit_code == 1 and "Error: give at most one of --max-steps, --epochs and --max-supervised-tokens" in both.output


def test_the_cli_lists_every_model_preset() -> None:
    from goldfish_prep.train.model import PRESETS
    from goldfish_prep_cli.train import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)


def test_every_new_command_has_help() -> None:
    for name in ("train", "memorization", "export"):
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("blocked for the test")
        return None
sys.meta_path.insert(0, Block())
from click.testing import CliRunner
from goldfish_prep_cli.main import cli
result = CliRunner().invoke(cli, sys.argv[1:])
print(result.output, end="")
print("modules:", sorted(m for m in sys.modules if m == "torch"))
"""


def test_without_torch_the_commands_say_how_to_install_it(corpus: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "train", str(corpus["goldfish"]), "-o", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert "Error: `goldfish-prep train` needs PyTorch, which is not installed. Fix: pip install 'goldfish-prep[train]'" in result.stdout
    export = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "export", str(corpus["goldfish"]), "-o", str(tmp_path / "flat")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert "Wrote" in export.stdout and "modules: []" in export.stdout
