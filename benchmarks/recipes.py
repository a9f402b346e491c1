"""What the benchmarks that train or score a recipe's members share."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import DataError
from pipeline.training.recipe import PROBE_FILE, Recipe, TrainedMember, probe_member
from pipeline.training.sources import ensure_prepared


def prepared_recipe(parser: argparse.ArgumentParser, path: Path) -> Recipe:
    """The recipe at `path`, its sources prepared; a missing or malformed recipe is the parser's
    one-line error, not a traceback."""
    try:
        recipe = Recipe.load(path)
    except DataError as error:
        parser.error(str(error))
    ensure_prepared(recipe.sources)
    return recipe


def fold_probe(parser: argparse.ArgumentParser, runs: Path, source: str, name: str) -> TrainedMember:
    """The probe `name` of a `cross-source --runs` folder's fold that held `source` out; a missing
    one is the parser's one-line error."""
    path = runs / "cross-source" / source / name / PROBE_FILE
    if not path.is_file():
        parser.error(f"{path} does not exist: want a cross-source runs folder of this recipe")
    return probe_member(name, path)
