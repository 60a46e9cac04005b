"""The bundled training loop: a readable nanoGPT-style loop over goldfish-prep shards.

One optimizer step: ``grad_accum`` micro-batches per process, each row a
``RowSampler`` row, the loss the mean over the step's *supervised* targets
(``loss.py``), AdamW with warm-up and cosine decay (``schedule.py``), gradient
clipping. CUDA gets bf16 autocast and (optionally) ``torch.compile``; CPU runs
in fp32. Under ``torchrun`` the model is wrapped in DDP and each rank reads its
own rows. Rank 0 logs to ``metrics.jsonl`` and keeps ``checkpoint.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from goldfish_prep.errors import ConfigError, OutputError
from goldfish_prep.format.commit import append_line, cannot_write, json_bytes, write_bytes_atomic
from goldfish_prep.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from goldfish_prep.train.config import TrainConfig
from goldfish_prep.train.data import RowSampler, ShardData, check_vocabulary, evaluation_rows, load_shards
from goldfish_prep.train.distributed import Distributed, all_reduce_sum, setup_distributed, teardown_distributed
from goldfish_prep.train.loss import summed_cross_entropy, supervised_count
from goldfish_prep.train.model import GPT, flops_per_token, preset_config
from goldfish_prep.train.runtime import Runtime, peak_flops, select_runtime
from goldfish_prep.train.schedule import learning_rate

LogFn = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    supervised_tokens: int
    train_loss: float
    eval_loss: float | None
    seconds: float
    num_parameters: int


@dataclasses.dataclass
class _Run:
    """Everything the loop mutates or reads, built once."""

    config: TrainConfig
    runtime: Runtime
    dist: Distributed
    model: GPT
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: RowSampler
    total_steps: int
    warmup_steps: int
    step: int = 0
    tokens: int = 0
    supervised: int = 0
    #: the last step's loss, kept in checkpoints so a resumed run that has nothing left reports it
    loss: float = float("nan")


def train(config: TrainConfig, log: LogFn | None = None) -> TrainResult:
    """Train the bundled model on ``config.data``; checkpoints and metrics go to ``config.run_dir``."""
    runtime = select_runtime(config.device)
    dist = setup_distributed(runtime.device.type)
    if dist.enabled and runtime.device.type == "cuda":
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", dist.local_rank))
    try:
        run = _build_run(config, runtime, dist)
        return _loop(run, log or (lambda _: None))
    finally:
        teardown_distributed(dist)


def _build_run(config: TrainConfig, runtime: Runtime, dist: Distributed) -> _Run:
    data = load_shards(config.data)
    vocab_size = config.vocab_size or data.vocab_size
    check_vocabulary(data, vocab_size)
    shape = {"block_size": config.block_size, "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd}
    model_config = preset_config(config.preset, vocab_size, dropout=config.dropout, **shape)
    torch.manual_seed(config.seed)
    model = GPT(model_config).to(runtime.device)
    sampler = RowSampler(data, model_config.block_size, config.seed)
    total, warmup = _plan_steps(config, sampler, dist.world_size)
    optimizer = _optimizer(model, config, runtime)
    run = _Run(config, runtime, dist, model, model, optimizer, sampler, total, warmup)
    _prepare_run_dir(config, dist)
    if config.resume:
        _restore(run)
    if config.compile:
        run.wrapped = torch.compile(run.wrapped)  # type: ignore[assignment]
    if dist.enabled:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        run.wrapped = DistributedDataParallel(run.wrapped, device_ids=ids)
    return run


def _plan_steps(config: TrainConfig, sampler: RowSampler, world_size: int) -> tuple[int, int]:
    """Total optimizer steps (the cosine schedule's length) and warm-up steps."""
    rows_per_step = config.batch_size * config.grad_accum * world_size
    if config.max_steps is not None:
        total = config.max_steps
    elif config.max_supervised_tokens is not None:
        per_row = sampler.supervised_per_epoch() / sampler.rows_per_epoch
        if per_row <= 0:
            raise ConfigError(f"{config.data}: no token is supervised (every label is -100); --max-supervised-tokens cannot be reached")
        total = math.ceil(config.max_supervised_tokens / (per_row * rows_per_step))
    else:
        total = math.ceil((config.epochs or 1.0) * sampler.rows_per_epoch / rows_per_step)
    total = max(total, 1)
    warmup = config.warmup_steps if config.warmup_steps is not None else min(1000, math.ceil(total / 20))
    return total, warmup


def _optimizer(model: GPT, config: TrainConfig, runtime: Runtime) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norms), as GPT-2 recipes do."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = runtime.device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=fused)


def _prepare_run_dir(config: TrainConfig, dist: Distributed) -> None:
    """Refuse to mix two runs in one folder; --overwrite starts afresh, --resume continues."""
    run_dir = config.run_dir
    if dist.is_main and run_dir.exists() and not config.resume and (run_dir / CHECKPOINT_NAME).exists():
        if not config.overwrite:
            raise OutputError(f"{run_dir} already holds a training run; pass --resume to continue it or --overwrite to start again")
        shutil.rmtree(run_dir)
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(run_dir / "config.json", json_bytes(config.to_dict()))
        except OSError as exc:
            raise cannot_write("the run's config", run_dir / "config.json", exc) from exc


def _restore(run: _Run) -> None:
    state = load_checkpoint(run.config.run_dir)
    saved = state["train_config"]
    mismatched = sorted(key for key, value in run.config.run_identity().items() if saved.get(key) != value)
    if mismatched:
        raise ConfigError(f"--resume with settings that differ from the saved run: {', '.join(mismatched)}; repeat the original options")
    if state["data_manifest"] != _data_identity(run.sampler.data):
        raise ConfigError(
            f"--resume on {run.config.data}, whose tokenizer or mask differ from the data the run started on; pass the original DATA_DIR"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    run.step, run.tokens, run.supervised = state["step"], state["tokens"], state["supervised_tokens"]
    run.loss = state.get("loss", float("nan"))  # absent from checkpoints written before it was recorded


def _save(run: _Run) -> None:
    if not run.dist.is_main:
        return
    save_checkpoint(
        run.config.run_dir,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "model_config": run.model.config.to_dict(),
            "train_config": run.config.run_identity(),
            "data_manifest": _data_identity(run.sampler.data),
            "step": run.step,
            "tokens": run.tokens,
            "supervised_tokens": run.supervised,
            "loss": run.loss,
            "rng": torch.get_rng_state(),
        },
    )


def _data_identity(data: ShardData) -> dict[str, Any]:
    """What a checkpoint records of its training data: the tokenizer and the mask config."""
    return {"tokenizer": data.manifest["tokenizer"], "mask": data.manifest["mask"]}


def _finished(run: _Run) -> bool:
    if run.config.max_supervised_tokens is not None:
        return run.supervised >= run.config.max_supervised_tokens
    return run.step >= run.total_steps


def _loop(run: _Run, log: LogFn) -> TrainResult:
    eval_data = _load_eval_data(run)
    if run.dist.is_main:  # for the console only (not metrics.jsonl): the first step line may be minutes away on a CPU
        planned = {"total_steps": run.total_steps, "estimated": run.config.max_supervised_tokens is not None}
        log(
            {
                "event": "start",
                "from_step": run.step,
                **planned,
                "parameters": run.model.num_parameters(),
                "device": str(run.runtime.device),
                "log_interval": run.config.log_interval,
            }
        )
    started, window_start, window_tokens = time.perf_counter(), time.perf_counter(), 0
    while not _finished(run):
        if eval_data is not None and run.config.eval_interval and run.step % run.config.eval_interval == 0 and run.step:
            _log(run, log, {"step": run.step, "eval_loss": evaluate(run.model, eval_data, run.runtime, run.config.batch_size)})
        run.loss, step_tokens = _train_step(run)
        window_tokens += step_tokens
        if run.step % run.config.log_interval == 0 or _finished(run):
            elapsed = time.perf_counter() - window_start
            _log(run, log, _step_metrics(run, run.loss, window_tokens / max(elapsed, 1e-9)))
            window_start, window_tokens = time.perf_counter(), 0
        if run.config.checkpoint_interval and run.step % run.config.checkpoint_interval == 0:
            _save(run)
    eval_loss = evaluate(run.model, eval_data, run.runtime, run.config.batch_size) if eval_data is not None else None
    _save(run)
    seconds = time.perf_counter() - started
    result = TrainResult(run.config.run_dir, run.step, run.tokens, run.supervised, run.loss, eval_loss, seconds, run.model.num_parameters())
    _log(run, log, {"event": "done", **{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}})
    return result


def _load_eval_data(run: _Run) -> ShardData | None:
    """Held-out shards, which must share the training tokenizer (else the loss compares nothing)."""
    if run.config.eval_data is None:
        return None
    data = load_shards(run.config.eval_data)
    trained, held_out = run.sampler.data.manifest["tokenizer"], data.manifest["tokenizer"]
    if (trained.get("name"), trained.get("vocab_size")) != (held_out.get("name"), held_out.get("vocab_size")):
        raise ConfigError(
            f"--eval-data {run.config.eval_data} was tokenized with {held_out.get('name')!r}, the training data with "
            f"{trained.get('name')!r}; prepare both with the same --tokenizer"
        )
    check_vocabulary(data, run.model.config.vocab_size)
    return data


def _micro_batches(run: _Run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's micro-batches of the current step, as int64 tensors on the device."""
    config, dist = run.config, run.dist
    for micro in range(config.grad_accum):
        first = ((run.step * config.grad_accum + micro) * dist.world_size + dist.rank) * config.batch_size
        inputs, targets = run.sampler.batch(range(first, first + config.batch_size))
        device = run.runtime.device
        yield torch.from_numpy(inputs).long().to(device), torch.from_numpy(targets).long().to(device)


def _train_step(run: _Run) -> tuple[float, int]:
    """One optimizer step; returns the step's mean loss over supervised targets and its input tokens (all ranks)."""
    lr = learning_rate(
        run.step,
        max_lr=run.config.learning_rate,
        min_lr=run.config.floor_learning_rate,
        warmup_steps=run.warmup_steps,
        total_steps=run.total_steps,
    )
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batches = list(_micro_batches(run))
    device = run.runtime.device
    count = all_reduce_sum(float(sum(supervised_count(t) for _, t in batches)), run.dist, device)
    # DDP averages gradients over ranks; scaling by world_size makes the result the gradient of sum/count
    scale = run.dist.world_size / max(count, 1.0)
    run.wrapped.train()
    summed = 0.0
    for index, (inputs, targets) in enumerate(batches):
        sync = index == len(batches) - 1 or not run.dist.enabled
        with contextlib.nullcontext() if sync else run.wrapped.no_sync(), run.runtime.autocast():  # type: ignore[operator]
            part = summed_cross_entropy(run.wrapped(inputs), targets)
        torch.autograd.backward(part * scale)  # Tensor.backward is untyped in torch's stubs
        summed += float(part.detach().item())
    if run.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    step_tokens = sum(inputs.numel() for inputs, _ in batches) * run.dist.world_size
    run.step, run.tokens, run.supervised = run.step + 1, run.tokens + step_tokens, run.supervised + int(count)
    return all_reduce_sum(summed, run.dist, device) / max(count, 1.0), step_tokens


def _step_metrics(run: _Run, loss: float, tokens_per_second: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "step": run.step,
        "loss": round(loss, 5),
        "lr": learning_rate(
            run.step - 1,
            max_lr=run.config.learning_rate,
            min_lr=run.config.floor_learning_rate,
            warmup_steps=run.warmup_steps,
            total_steps=run.total_steps,
        ),
        "tokens": run.tokens,
        "supervised_tokens": run.supervised,
        "tokens_per_s": round(tokens_per_second, 1),
    }
    peak = peak_flops(run.runtime)
    if peak is not None:
        achieved = flops_per_token(run.model.config, run.model.num_parameters()) * tokens_per_second
        metrics["mfu"] = round(achieved / (peak * run.dist.world_size), 4)
    return metrics


def _log(run: _Run, log: LogFn, metrics: dict[str, Any]) -> None:
    if not run.dist.is_main:
        return
    try:
        append_line(run.config.run_dir / "metrics.jsonl", json.dumps(metrics))
    except OSError as exc:
        raise cannot_write("the metrics log", run.config.run_dir / "metrics.jsonl", exc) from exc
    log(metrics)


@torch.no_grad()
def evaluate(model: GPT, data: ShardData, runtime: Runtime, batch_size: int) -> float:
    """Mean cross-entropy over every token of held-out shards (no goldfish mask, see ``evaluation_rows``)."""
    rows = evaluation_rows(data, model.config.block_size)
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, len(rows), batch_size):
        chunk = rows[begin : begin + batch_size]
        inputs = torch.stack([torch.from_numpy(r[0]) for r in chunk]).long().to(runtime.device)
        targets = torch.stack([torch.from_numpy(r[1]) for r in chunk]).long().to(runtime.device)
        with runtime.autocast():
            total += float(summed_cross_entropy(model(inputs), targets).item())
        count += supervised_count(targets)
    return total / max(count, 1)
