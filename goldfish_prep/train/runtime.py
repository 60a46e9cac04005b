"""Where and in what precision the model runs: CUDA with bf16 autocast, or CPU in fp32.

Also the accelerator's peak throughput, for MFU (model FLOPs utilisation): the
share of the chip's dense bf16 peak that the training step achieves.
"""

from __future__ import annotations

import contextlib
import dataclasses
from contextlib import AbstractContextManager

import torch

from goldfish_prep.errors import ConfigError

#: Dense bf16 peak FLOP/s by device name fragment (vendor data sheets, no sparsity).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "4090": 165e12}


@dataclasses.dataclass(frozen=True)
class Runtime:
    device: torch.device
    #: the autocast dtype, or None for plain fp32
    autocast_dtype: torch.dtype | None

    def autocast(self) -> AbstractContextManager[object]:
        """bf16 autocast on CUDA; nothing on CPU (fp32 throughout)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def select_runtime(device: str = "auto") -> Runtime:
    """``auto``: the first GPU if there is one, else the CPU.

    >>> select_runtime("cpu")
    Runtime(device=device(type='cpu'), autocast_dtype=None)
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: this torch build sees no CUDA GPU; use --device cpu")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Runtime(resolved, torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    if resolved.type != "cpu":
        raise ConfigError(f"--device {device}: only cpu and cuda are supported")
    return Runtime(resolved, None)


def peak_flops(runtime: Runtime) -> float | None:
    """The GPU's dense bf16 peak, or None (CPU, or a GPU not in the table: no MFU is logged)."""
    if runtime.device.type != "cuda" or runtime.autocast_dtype is None:
        return None
    name = torch.cuda.get_device_name(runtime.device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)
