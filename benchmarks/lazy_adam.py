"""LazyAdam against torch.optim.SparseAdam: the embedding step of neighbour-sampled training, same run.

For each size of ``scale.py``'s synthetic graphs, an embedding table with that graph's users and
items (dimension 64) receives the sparse gradient of one sampled batch: the number of distinct
rows a batch of 8,192 triplets with fan-out 10,10 reaches there (measured by ``scale.py``), plus
repeated rows, as a batch's users repeat. Both optimisers take the same steps from the same
table, alternating so that load on the machine hits both alike; the table reports the median
step time of each and their ratio, and checks that the two tables end equal.

Run: ``.venv/bin/python benchmarks/lazy_adam.py`` (about a minute on 2 cores). Writes
``benchmarks/results/lazy_adam.json``. ``--quick`` is the smoke test: the 1M graph's table only, 3 steps,
written to ``results/smoke/lazy_adam.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import print_table, results_dir, write_results

from graphrec.training.lazy_adam import LazyAdam

#: (graph, table rows = users + items, distinct rows one batch touches), from results/scale.json.
SIZES = [("1M", 70_000, 59_755), ("10M", 700_000, 412_058), ("50M", 3_500_000, 966_679)]
DIM = 64


def time_steps(rows: int, touched: int, steps: int, seed: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    initial = torch.randn(rows, DIM, generator=generator) * 0.1
    tables, optimizers, seconds = {}, {}, {"SparseAdam": [], "LazyAdam": []}
    for name, optimizer_class in (("SparseAdam", torch.optim.SparseAdam), ("LazyAdam", LazyAdam)):
        tables[name] = torch.nn.Embedding.from_pretrained(initial.clone(), freeze=False, sparse=True)
        optimizers[name] = optimizer_class(tables[name].parameters(), lr=1e-3)
    for _ in range(steps):
        ids = torch.randperm(rows, generator=generator)[:touched]
        ids = torch.cat([ids, ids[:touched // 10]])  # repeated rows, summed by both optimisers
        for name in seconds:
            optimizers[name].zero_grad()
            (tables[name](ids) ** 2).sum().mul(1e-3).backward()
            started = time.perf_counter()
            optimizers[name].step()
            seconds[name].append(time.perf_counter() - started)
    difference = float((tables["SparseAdam"].weight - tables["LazyAdam"].weight).abs().max())
    sparse, lazy = statistics.median(seconds["SparseAdam"][1:]), statistics.median(seconds["LazyAdam"][1:])
    return {"SparseAdam s/step": sparse, "LazyAdam s/step": lazy, "speed-up": sparse / lazy,
            "max abs difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per optimiser and size (the first is not timed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: the smallest table, 3 steps (writes results/smoke/)")
    args = parser.parse_args()
    if args.quick:
        args.steps = 3
    torch.set_num_threads(args.threads)
    rows = []
    for label, table_rows, touched in SIZES[:1] if args.quick else SIZES:
        result = time_steps(table_rows, touched, args.steps, seed=0)
        rows.append({"graph": label, "table rows": table_rows, "touched rows": touched, **result})
        print(f"[{label}] SparseAdam {result['SparseAdam s/step']:.3f} s, LazyAdam {result['LazyAdam s/step']:.3f} s "
              f"({result['speed-up']:.2f}x)", flush=True)
    columns = ["graph", "table rows", "touched rows", "SparseAdam s/step", "LazyAdam s/step", "speed-up",
               "max abs difference"]
    print_table(rows, columns)
    write_results("lazy_adam", {"description": __doc__.splitlines()[0], "dim": DIM, "threads": args.threads,
                                "steps": args.steps, "rows": rows}, results_dir(partial=args.quick))


if __name__ == "__main__":
    main()
