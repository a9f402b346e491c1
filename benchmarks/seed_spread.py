"""The spread of cross-source tables made by one recipe with different training seeds (rule 39).

Each table is the JSON `python -m pipeline cross-source --json` writes; given the tables of one
recipe whose CNNs were trained with different seeds (rules 35, 38, 39), this prints, for every
model and each column (as they are, re-shared, mixed), the held-out ROC AUC of each table, their
mean and range, per source and for the mean over sources, and the same for the weight trials:

    .venv/bin/python -m benchmarks.seed_spread TABLE_1234.json TABLE_1235.json TABLE_1236.json

`cross-source --seeds 1234 1235 1236` trains the folds with each seed and prints the same itself;
this reads tables already made. The range is a floor: a difference between two recipes smaller
than it, each made with one seed, says nothing about the recipes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.training.cross_source import seed_spread, seed_spread_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path, help="cross-source --json tables of one recipe")
    args = parser.parse_args()
    tables = [json.loads(path.read_text()) for path in args.tables]
    print(f"{len(tables)} tables: {', '.join(str(path) for path in args.tables)}\n")
    print(seed_spread_text(seed_spread(tables)))


if __name__ == "__main__":
    main()
