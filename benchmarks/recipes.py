"""What the benchmarks that train or score a recipe's members share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import DataError
from pipeline.training.cross_source import (
    Scored,
    cached_fold_logits,
    fold_calibration,
    fold_members,
    member_fold_dir,
)
from pipeline.training.recipe import (
    CLIP_PROBE,
    PROBE_FILE,
    Recipe,
    TrainedMember,
    member_at,
    probe_member,
    samples_of,
)
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


def require_folds(
    parser: argparse.ArgumentParser,
    recipe: Recipe,
    runs: Path,
    cnn_folder: str | None = None,
    held_out: Sequence[str] | None = None,
) -> None:
    """Every fold of `recipe` (or those holding out `held_out`) in a `cross-source --runs` folder
    has its members' cached logits (a seeded recipe's CNNs in `cnn_folder`), else the parser's
    one-line error: a benchmark that only reads folds would otherwise train the missing ones, for
    hours."""
    for source in held_out or recipe.sources:
        if source not in recipe.sources:
            parser.error(f"the recipe has no source {source!r}")
        for member in fold_members(recipe):
            if not (member_fold_dir(runs, source, member, cnn_folder) / member["name"] / "logits.npz").is_file():
                parser.error(f"{runs} holds no {member['name']!r} of the {source} fold: make the table first")


def _fold_file(parser: argparse.ArgumentParser, folder: Path, name: str, file: str) -> Path:
    path = folder / name / file
    if not path.is_file():
        parser.error(f"{path} does not exist: want a cross-source runs folder of this recipe")
    return path


def fold_probe(parser: argparse.ArgumentParser, runs: Path, source: str, name: str) -> TrainedMember:
    """The probe `name` of a `cross-source --runs` folder's fold that held `source` out; a missing
    one is the parser's one-line error."""
    return probe_member(name, _fold_file(parser, runs / "cross-source" / source, name, PROBE_FILE))


def fold_member(
    parser: argparse.ArgumentParser,
    recipe: Recipe,
    runs: Path,
    source: str,
    name: str,
    cnn_folder: str | None = None,
) -> TrainedMember:
    """The member `name` of `recipe` (a probe or a CNN) as the fold of a `cross-source --runs`
    folder that held `source` out trained it (a CNN of another seed in `cnn_folder`: `seeded`);
    an unknown or missing one is the parser's one-line error."""
    member = next((m for m in recipe.members if m["name"] == name), None)
    if member is None:
        parser.error(f"the recipe has no member {name!r}")
    file = PROBE_FILE if member["kind"] == CLIP_PROBE else "model.keras"
    return member_at(member, _fold_file(parser, member_fold_dir(runs, source, member, cnn_folder), name, file))


def fold_temperatures(
    parser: argparse.ArgumentParser,
    recipe: Recipe,
    source: str,
    runs: dict[str, Path],
    names: Sequence[str],
    cnn_folder: str | None = None,
) -> dict[str, float]:
    """Each named member's temperature as the table fits it on the fold that held `source` out:
    on the validation mix of the other sources, from the logits the fold cached in `runs[name]`
    (a seeded recipe's CNNs in `cnn_folder`); a fold without them is the parser's one-line error."""
    val = samples_of([s for s in recipe.sources if s != source], "val", recipe.val_per_class)
    logits = {}
    for name in names:
        member = next(m for m in recipe.members if m["name"] == name)
        cached = cached_fold_logits(recipe, source, runs[name], member, {"val": val}, cnn_folder)
        if "val" not in cached:
            parser.error(f"{runs[name]} holds no validation logits of {name!r} for this recipe's {source} fold")
        logits[name] = cached["val"]
    return fold_calibration(Scored(val, logits), recipe.combination.weights)[0]
