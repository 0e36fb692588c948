"""Devices and dtypes: what a user asks for is honoured or refused with a clear error, never
silently replaced (a ``device="cuda"`` on a machine without CUDA is an error, not a CPU run)."""

from __future__ import annotations

import functools
import re
import time

from trustrec.errors import ConfigError

__all__ = ["DTYPES", "bfloat16_is_fast", "check_device_supported", "resolve_device", "resolve_dtype"]

DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?|auto")


def resolve_device(device: str = "cpu"):
    """The ``torch.device`` for ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``:
    the first CUDA device when there is one, else the CPU); a device this machine does not have
    raises :class:`~trustrec.errors.ConfigError` saying what torch sees."""
    import torch

    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigError(
                f"device {device!r} was asked for, but torch {torch.__version__} ({build}) sees no "
                "CUDA device here; use device='cpu' (or 'auto')"
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise ConfigError(
                f"device {device!r} was asked for, but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} was asked for, but torch sees no Apple MPS device here; use device='cpu'")
    return torch.device(device)


def resolve_dtype(dtype: str = "float32"):
    """The ``torch.dtype`` named ``dtype`` (one of :data:`DTYPES`)."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


def check_device_supported(owner: str, device: str, supported: tuple[str, ...]) -> None:
    """Refuse a device kind ``owner`` cannot run on (e.g. a numpy model asked for CUDA), after
    checking the device exists."""
    if device in ("cpu", "auto"):
        return
    resolve_device(device)
    kind = device.partition(":")[0]
    if kind not in supported:
        raise ConfigError(
            f"{owner} runs on {', '.join(supported)} only and cannot use device {device!r}; use device='cpu'"
        )


def bfloat16_is_fast(device: str = "cpu") -> bool:
    """Whether bfloat16 matrix products beat float32 on ``device``: CUDA devices that support
    bf16 do; on a CPU it is measured once per process, since it depends on the chip (with AMX
    or AVX512-BF16 units bf16 is faster; on an AVX2-only CPU it is emulated and an order of
    magnitude slower). ``"auto"`` settings choose bf16 only where this holds."""
    target = resolve_device(device)
    if target.type == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    if target.type != "cpu":
        return False
    return _cpu_bfloat16_speedup() > 1.1


@functools.cache
def _cpu_bfloat16_speedup() -> float:
    """float32 time over bfloat16 time of a 256 x 256 matrix product (best of 5, after warm-up)."""
    import torch

    def best(dtype) -> float:
        a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)).to(dtype)
        a @ a
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.float32) / max(best(torch.bfloat16), 1e-9)
