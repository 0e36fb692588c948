"""bfloat16 vs float32 matrix products on this CPU, side by side: is bf16 native here (AMX /
AVX512-BF16) or emulated (AVX2 only)? The figure behind ``autocast: auto`` / ``cast("auto")``.

    python benchmarks/bf16_matmul.py --sizes 256 576 1536 --repeats 5

Per size: the best of ``--repeats`` timings of ``a @ a`` for each dtype (interleaved, after a
warm-up), GFLOP/s and the bf16 / float32 speed ratio; also what
``trustrec._device.bfloat16_is_fast("cpu")`` decides. Writes ``benchmarks/results/bf16_matmul.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _command import command_line


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 576, 1536])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bf16_matmul.json")
    args = parser.parse_args()
    import torch

    from trustrec._device import bfloat16_is_fast

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"{'size':>6} {'float32 GFLOP/s':>16} {'bfloat16 GFLOP/s':>17} {'bf16 / fp32':>12}")
    for n in args.sizes:
        mats = {
            dt: torch.randn(n, n, generator=torch.Generator().manual_seed(0)).to(dt)
            for dt in (torch.float32, torch.bfloat16)
        }
        best = {dt: float("inf") for dt in mats}
        for a in mats.values():
            a @ a  # warm-up
        for _ in range(args.repeats):
            for dt, a in mats.items():
                start = time.perf_counter()
                a @ a
                best[dt] = min(best[dt], time.perf_counter() - start)
        flops = 2 * n**3
        row = {
            "size": n,
            "float32_gflops": flops / best[torch.float32] / 1e9,
            "bfloat16_gflops": flops / best[torch.bfloat16] / 1e9,
        }
        row["bf16_over_fp32"] = row["bfloat16_gflops"] / row["float32_gflops"]
        rows.append(row)
        print(f"{n:>6} {row['float32_gflops']:>16.2f} {row['bfloat16_gflops']:>17.2f} {row['bf16_over_fp32']:>11.3f}x")
    decision = bfloat16_is_fast("cpu")
    print(f"bfloat16_is_fast('cpu') -> {decision}")
    report = {
        "command": command_line(),
        "processor": _cpu_name(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "results": rows,
        "bfloat16_is_fast": decision,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out.name}")


if __name__ == "__main__":
    main()
