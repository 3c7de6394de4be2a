"""Bootstrap cost: weighted-sum resampling (metrics.bootstrap) vs recomputing each resample from items.

    .venv/bin/python bench/bench_eval_bootstrap.py [--items 5716] [--resamples 1000]

Prints seconds per 1000 resamples for both and the speed-up ratio, measured in the same run, for a
5-label macro-F1 task the size of the DDI-2013 test set.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from rich.console import Console

from evaluation.metrics import bootstrap, label_measures

LABELS = ("mechanism", "effect", "advise", "int", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5716)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=50, help="naive path is timed on fewer")
    args = parser.parse_args()
    rng = random.Random(0)
    golds = [rng.choice(LABELS) for _ in range(args.items)]
    preds: list[str | None] = [g if rng.random() < 0.6 else rng.choice((*LABELS, None)) for g in golds]

    start = time.perf_counter()
    samples = bootstrap(label_measures(golds, preds, LABELS), resamples=args.resamples, seed=0)["macro_f1"]
    vectorised = (time.perf_counter() - start) / args.resamples * 1000

    draw = np.random.default_rng(0)
    start = time.perf_counter()
    naive = []
    for _ in range(args.naive_resamples):
        idx = draw.integers(0, args.items, args.items)
        naive.append(label_measures([golds[i] for i in idx], [preds[i] for i in idx], LABELS)[0].value())
    per_naive = (time.perf_counter() - start) / args.naive_resamples * 1000

    console = Console()
    console.print(f"items={args.items}  macro-F1 CI [{np.percentile(samples, 2.5):.3f}, "
                  f"{np.percentile(samples, 97.5):.3f}]  naive spread {np.std(naive):.3f}")
    console.print(f"weighted sums: {vectorised:.2f} s / 1000 resamples")
    console.print(f"recompute:     {per_naive:.2f} s / 1000 resamples")
    console.print(f"ratio recompute/weighted = {per_naive / vectorised:.1f}x")


if __name__ == "__main__":
    main()
