"""What the benchmarks that train or score a recipe's members share."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import DataError
from pipeline.training.recipe import Recipe
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
