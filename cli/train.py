"""``goldfish-prep train``: parse options, run ``goldfish_prep.train.trainer.train``, print progress and the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from goldfish_prep.train import require_torch

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`

PRESET_NAMES = ("tiny", "small", "124m")  # goldfish_prep.train.model.PRESETS, listed here so --help needs no torch


@click.command(context_settings={"max_content_width": 100})
@click.argument("data_dir", type=DataFolder(exists=True))
@click.option(
    "-o",
    "--output",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: checkpoint.pt, config.json, metrics.jsonl.",
)
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default="tiny",
    show_default=True,
    help="Model size: tiny (CPU, minutes), small, 124m (GPT-2 small shape, GPU).",
)
@click.option("--block-size", type=click.IntRange(min=2), default=None, help="Context length in tokens.  [default: the preset's]")
@click.option("--n-layer", type=click.IntRange(min=1), default=None, help="Transformer blocks.  [default: the preset's]")
@click.option("--n-head", type=click.IntRange(min=1), default=None, help="Attention heads.  [default: the preset's]")
@click.option("--n-embd", type=click.IntRange(min=2), default=None, help="Width.  [default: the preset's]")
@click.option(
    "--vocab-size", type=click.IntRange(min=2), default=None, help="Embedding rows.  [default: the manifest's tokenizer vocab_size]"
)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Rows per micro-batch per process.")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option(
    "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Peak learning rate."
)
@click.option(
    "--min-lr", "min_learning_rate", type=click.FloatRange(min=0), default=None, help="End of the cosine decay.  [default: lr/10]"
)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None, help="Linear warm-up.  [default: 5% of the steps, at most 1000]")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.1, show_default=True)
@click.option("--grad-clip", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Clip the gradient norm (0: off).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Train for this many optimizer steps.")
@click.option(
    "--epochs", type=click.FloatRange(min=0, min_open=True), default=None, help="Train for this many passes over the data (the default: 1)."
)
@click.option(
    "--max-supervised-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Train until this many tokens have counted in the loss (equal-supervised-tokens comparisons).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Initialisation and data order.")
@click.option(
    "--eval-data",
    type=DataFolder(exists=True),
    default=None,
    help="Held-out shards: validation loss over all their tokens (no goldfish mask).",
)
@click.option(
    "--eval-interval",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Steps between validation losses (0: at the end only).",
)
@click.option("--log-interval", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--checkpoint-interval",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Steps between checkpoints (0: at the end only).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (GPU).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its checkpoint (same options).")
@click.option("--overwrite", is_flag=True, help="Delete a previous run in RUN_DIR and start again.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the result.")
@storage_options
def train(data_dir: Path | str, run_dir: Path, compile_model: bool, quiet: bool, **options: Any) -> None:
    """Train a small decoder-only transformer on masked shards (DATA_DIR from `mask`).

    The loss is the mean cross-entropy over supervised tokens: labels of -100
    (the goldfish mask) count for nothing. Documents are packed into rows of
    --block-size tokens, each token keeping its label; the order is shuffled
    each epoch from --seed. On CUDA: bf16 autocast and flash attention; on CPU:
    fp32. Several GPUs: launch with torchrun.

    \b
    Examples:
      goldfish-prep train shards/ -o runs/gf4 --epochs 50 --eval-data heldout/
      goldfish-prep train control/ -o runs/std --max-supervised-tokens 2000000
      goldfish-prep train shards/ -o runs/gf4 --epochs 50 --resume      # after an interruption
      torchrun --nproc_per_node 8 -m goldfish_prep_cli train shards/ -o runs/big --preset 124m --compile
    """
    require_torch("train")
    from goldfish_prep.train.config import TrainConfig
    from goldfish_prep.train.trainer import train as run_training

    config = TrainConfig(data=data_dir, run_dir=run_dir, compile=compile_model, **options)
    result = run_training(config, log=None if quiet else _print_metrics)
    eval_text = f", validation loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""
    click.echo(
        f"Trained {result.num_parameters:,} parameters for {result.steps:,} steps: {result.tokens:,} tokens, "
        f"{result.supervised_tokens:,} supervised, in {result.seconds:.1f} s; final loss {result.train_loss:.4f}{eval_text}\n"
        f"Checkpoint: {run_dir / 'checkpoint.pt'}\n"
        f"Next: goldfish-prep memorization {run_dir} {data_dir}"
    )


def _print_metrics(metrics: dict[str, Any]) -> None:
    if metrics.get("event") == "start":  # said at once: on a CPU the first step line can take minutes
        about = "about " if metrics["estimated"] else ""
        since = f" from step {metrics['from_step']:,}" if metrics["from_step"] else ""
        click.echo(
            f"Training {metrics['parameters']:,} parameters on {metrics['device']}: {about}{metrics['total_steps']:,} steps{since}, "
            f"a line every {metrics['log_interval']:,} steps",
            err=True,
        )
        return
    if "event" in metrics:
        return
    if "eval_loss" in metrics:
        click.echo(f"step {metrics['step']:>6} | validation loss {metrics['eval_loss']:.4f}", err=True)
        return
    mfu = f" | mfu {metrics['mfu']:.1%}" if "mfu" in metrics else ""
    click.echo(
        f"step {metrics['step']:>6} | loss {metrics['loss']:.4f} | lr {metrics['lr']:.2e} | "
        f"{metrics['tokens_per_s']:,.0f} tok/s | supervised {metrics['supervised_tokens']:,}{mfu}",
        err=True,
    )
