"""Which device, which precision, which determinism: one resolver for every command.

`--precision auto` goes by real capability, because torch reports bf16 as "supported" on GPUs that only emulate it
(T4, V100, P100), where it is slow; the table, and what `--deterministic` trades: docs/design.md, "Training on the
GPUs people have".
"""
import os
from pathlib import Path
from typing import Optional, Tuple

import torch

from common.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str) -> torch.device:
    """auto = the GPU when there is one. A missing GPU asked for by name is a one-line error."""
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_bf16(cpuinfo: Optional[str] = None) -> bool:
    """True where the CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere it is slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return "avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo


def cuda_capability(device: torch.device) -> Tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def auto_precision(device_type: str, capability: Optional[Tuple[int, int]] = None, cpu_bf16: bool = False) -> str:
    """The decision table above as a pure function (tested with every row)."""
    if device_type == "cuda":
        if capability >= (8, 0):
            return "bf16"
        if capability >= (7, 0):
            return "fp16"
        return "off"
    return "bf16" if cpu_bf16 else "off"


def resolve_precision(name: str, device: torch.device) -> str:
    """--precision for this device: auto by capability; an explicit choice the device cannot run is an error."""
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise UserError("fp16 autocast needs a CUDA device; use --precision bf16, off or auto")
    if name != "auto":
        return name
    if device.type == "cuda":
        return auto_precision("cuda", cuda_capability(device))
    return auto_precision("cpu", cpu_bf16=cpu_has_bf16())


def autocast(device: torch.device, precision: str):
    """Autocast to the resolved precision (bf16/fp16), or a no-op context for "off"."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def configure_backends(device: torch.device, deterministic: bool = False, tf32: bool = True) -> dict:
    """Set cuDNN/cuBLAS/TF32 policy for this process; returns what was set (for the run record).

    TF32 (sm80+): fp32 matmuls and convolutions on tensor cores with a 10-bit mantissa — what
    PyTorch recommends for training; `--no-tf32` keeps full fp32.
    """
    if deterministic:
        # cuBLAS reads this when its first handle is created: set it before any CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
    else:
        torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    use_tf32 = tf32 and device.type == "cuda" and cuda_capability(device) >= (8, 0)
    torch.backends.cuda.matmul.allow_tf32 = use_tf32
    torch.backends.cudnn.allow_tf32 = use_tf32
    return {"deterministic": deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark, "tf32": use_tf32}


def data_fits_on_device(policy: str, device: torch.device, nbytes: int, free_bytes: Optional[int] = None) -> bool:
    """--data-on-device: keep the uint8 training set on the GPU? (auto, yes, no: docs/design.md, "Training on the
    GPUs people have"; yes is an error when it cannot fit at all.)"""
    if policy not in ("auto", "yes", "no"):
        raise UserError(f"--data-on-device must be auto, yes or no, got {policy!r}")
    if device.type != "cuda" or policy == "no":
        return False
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    if policy == "yes":
        if nbytes > free_bytes:
            raise UserError(f"--data-on-device yes: the training set needs {nbytes / 2**30:.1f} GiB but the GPU has "
                            f"{free_bytes / 2**30:.1f} GiB free; use --data-on-device auto or a smaller --image-size")
        return True
    return nbytes <= 0.5 * free_bytes
