"""Replay `resizelab advise` against full grids measured on the CIFAR-10 sample, and against random search and plain
TPE (full runs, one seed, no fidelity) at the same budget. Measures, never asserts; prints a Markdown table.

    PYTHONPATH=src python benchmarks/advise_replay.py benchmarks/advise_grid_*.json --replays 20 --budget 20% --pareto-budget 25%

Per grid and strategy: how many replays recommend a pipeline within 0.5 points of the grid's best mean test
accuracy or inside its 95% interval, the median and worst regret (points of test accuracy), the share of the grid's
compute spent, and the hypervolume (accuracy against training time) of the pipelines trained, as a share of the
grid's, for the Pareto objective at its own budget.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from resizelab.search.advise import AdviseConfig, run_advise
from resizelab.search.replay import Grid, score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grids", nargs="+")
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--budget", default="20%")
    ap.add_argument("--pareto-budget", default="25%")
    args = ap.parse_args(argv)
    print(f"| grid | strategy | budget | hits (of {args.replays}) | within 0.5 pt | median regret | mean regret | worst regret | "
          "compute spent (median) | hypervolume (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.grids:
        grid = Grid.load(path)
        truth = grid.truth()
        best = grid.best()
        print(f"<!-- {grid.name}: {len(grid.points)} pipelines x {len(grid.seeds)} seeds, best {best.label()} "
              f"{truth[best]['test']:.2f}% [{truth[best]['lo']:.2f}, {truth[best]['hi']:.2f}], grid {grid.total_seconds():.0f} s -->")
        rows = [("advise", args.budget, "accuracy"), ("tpe", args.budget, "accuracy"), ("random", args.budget, "accuracy"),
                ("advise", "10%", "accuracy"), ("random", "10%", "accuracy"),
                ("advise", args.pareto_budget, "pareto"), ("random", args.pareto_budget, "accuracy")]
        for strategy, budget, objective in rows:
            scores = [score(grid, run_advise(None, None, AdviseConfig(budget=budget, seed=seed, strategy=strategy,
                                                                     objective=objective, replay=path)).result)
                      for seed in range(args.replays)]
            name = "pareto (NSGA-II)" if objective == "pareto" else strategy
            print(f"| {grid.name} | {name} | {budget} | {sum(s.hit for s in scores)} | {sum(s.regret <= 0.5 for s in scores)} | "
                  f"{statistics.median(s.regret for s in scores):.2f} | {statistics.mean(s.regret for s in scores):.2f} | "
                  f"{max(s.regret for s in scores):.2f} | "
                  f"{100 * statistics.median(s.spent_share for s in scores):.1f}% | "
                  f"{100 * statistics.median(s.hv_share for s in scores):.1f}% |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
