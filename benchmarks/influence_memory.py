"""Peak memory of the full-scale head case: n = 60,000, m = 10,000, 768-d features.

A linear head ``nn.Linear(768, 10)`` on cached features with ``--checkpoints``
checkpoints; the engine computes the train-to-test matrix (``n x m`` float32,
2.4 GB for the full scale) and the self-influence. The run happens in a fresh
subprocess whose peak resident set size (``ru_maxrss``) is reported, beside the
estimate

    matrix n*m*4  +  inputs (n + m)*d*4  +  engine workspace  +  interpreter baseline

where the engine workspace is bounded by its chunk budgets (about 0.5 GB,
``glitchlib.influence._tracin``), independent of ``n`` and ``m``. The budget the
setting must respect is 24 GiB.

Run: ``python benchmarks/influence_memory.py [--n 60000 --m 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import torch
from torch import nn
from glitchlib.influence import TracIn

n, m, d, t, threads = (int(v) for v in sys.argv[1:6])
if threads:
    torch.set_num_threads(threads)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
gen = torch.Generator().manual_seed(0)
head = nn.Linear(d, 10)
checkpoints = [({k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in head.state_dict().items()}, 0.1)
               for _ in range(t)]
x = torch.randn(n, d, generator=gen)
xt = torch.randn(m, d, generator=gen)
y = torch.randint(0, 10, (n,), generator=gen)
yt = torch.randint(0, 10, (m,), generator=gen)
engine = TracIn(head, checkpoints, [""], progress=False)
start = time.perf_counter()
influence = engine.train_test(x, y, xt, yt)
t_matrix = time.perf_counter() - start
start = time.perf_counter()
si = engine.self_influence(x, y)
t_si = time.perf_counter() - start
assert influence.shape == (n, m) and torch.isfinite(influence[:: max(1, n // 100)]).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kib": base, "peak_kib": peak, "t_matrix": t_matrix, "t_si": t_si,
                  "threads": torch.get_num_threads()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()

    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *(str(v) for v in (args.n, args.m, args.d, args.checkpoints, args.threads))],
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GiB (Linux: KiB)
    matrix = args.n * args.m * 4 / 2**30
    inputs = (args.n + args.m) * args.d * 4 / 2**30
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.n} x {args.m} matrix, d={args.d}, T={args.checkpoints}")
    print(f"torch threads {result['threads']}; train_test {result['t_matrix']:.1f} s, "
          f"self_influence {result['t_si']:.1f} s, child wall {wall:.1f} s")
    print(f"peak RSS {child_peak:.2f} GiB (interpreter + torch before work {result['baseline_kib'] / 2**20:.2f} GiB)")
    print(f"estimate: matrix {matrix:.2f} + inputs {inputs:.2f} + workspace <= 0.50 + baseline "
          f"= {matrix + inputs + 0.5 + result['baseline_kib'] / 2**20:.2f} GiB; budget 24 GiB")


if __name__ == "__main__":
    main()
