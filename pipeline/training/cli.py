"""Training-side commands (prepare, train, train-ensemble, evaluate), registered on the main parser."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import DEFAULT_AGGREGATION, REPO_ROOT, Settings
from pipeline.engine.quiet import quiet_libraries
from pipeline.errors import DataError, PipelineError
from pipeline.training.sources import SOURCES, ensure_prepared

if TYPE_CHECKING:
    from pipeline.training.recipe import Recipe, TrainedMember

MEMBERS = ("mobilenetv2", "efficientnet_lite0")


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.training.prepare import prepare

    count = prepare(args.source, args.out_dir, frames=args.frames, landmarks=not args.no_landmarks, limit=args.limit)
    print(f"{args.out_dir}: {count} face crops and metadata.csv (media without a face: skipped.csv)")
    return 0


def _train_config(args: argparse.Namespace, backbone: str, out_dir: Path):  # -> TrainConfig
    from pipeline.training.train import TrainConfig

    return TrainConfig(
        backbone=backbone,
        name=getattr(args, "name", None) or "",
        init_from=getattr(args, "init_from", None),
        data=tuple(args.data),
        out_dir=out_dir,
        input_size=args.input_size,
        weights=None if args.from_scratch else "imagenet",
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        views=args.views,
        self_blend=args.self_blend,
        trainable_blocks=args.trainable_blocks,
        head_epochs=args.head_epochs,
        finetune_epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        rounds=args.rounds,
        round_epochs=args.round_epochs,
        round_lr=args.round_lr,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.training.recipe import TrainedMember
    from pipeline.training.train import train_member

    config = _train_config(args, args.backbone, args.out or Path("runs") / (args.name or args.backbone))
    quiet_libraries()
    result = train_member(config, resume=args.resume)
    print(f"saved {result.model_path} (best validation ROC AUC {result.best_val_auc:.4f})")
    if args.ensemble_dir:
        # A one-member calibrated ensemble, so `evaluate` can measure this model on its own.
        from pipeline.training.ensemble_fit import fit_ensemble

        member = TrainedMember(config.member_name, "keras", result.model_path, args.backbone, args.input_size)
        fit_ensemble([member], list(args.data), args.ensemble_dir, val_per_class=args.val_per_class)
        print(f"wrote a one-member ensemble to {args.ensemble_dir}")
    return 0


def cmd_train_ensemble(args: argparse.Namespace) -> int:
    """Train every member of the recipe on all its sources, then calibrate and combine them
    into the models folder (without --recipe: the members named by --members, from the flags)."""
    from pipeline.training.recipe import Combination, Recipe, train_recipe_member

    if args.keep and not args.recipe:
        raise PipelineError("--keep needs --recipe (it names members of the recipe)")
    if args.recipe:
        recipe = Recipe.load(args.recipe)
    else:
        members = tuple(
            {"kind": "keras", "name": backbone, **vars(_train_config(args, backbone, args.runs / backbone))}
            for backbone in args.members.split(",")
        )
        for member in members:
            member.pop("out_dir")
        recipe = Recipe(tuple(args.data), members, Combination({}), args.aggregation, args.val_per_class, {}, 0)
    kept = _kept_members(recipe, args.keep or (), args.models_dir)
    quiet_libraries()
    from pipeline.training.ensemble_fit import fit_ensemble  # it loads Keras: after the checks

    ensure_prepared(recipe.sources)
    trained = [
        kept.get(member["name"]) or train_recipe_member(member, recipe.sources, args.runs, None, args.resume)
        for member in recipe.members
    ]
    validation = fit_ensemble(
        trained,
        recipe.sources,
        args.models_dir,
        val_per_class=recipe.val_per_class,
        aggregation=recipe.aggregation,
        combination=recipe.combination,
        calibration=recipe.ensemble_calibration,
        pictures=recipe.pictures,
        disagreement=recipe.disagreement,
        threshold_rule=recipe.threshold_rule,
    )
    print(json.dumps({k: v for k, v in validation.items() if k != "weight_trials"}, indent=2))
    return 0


def _kept_members(recipe: Recipe, names: Sequence[str], models_dir: Path) -> dict[str, TrainedMember]:
    """The members `--keep` takes as they are from the models folder, checked before any training."""
    from pipeline.engine.ensemble import CLIP_PROBE
    from pipeline.training.recipe import kept_member

    by_name = {m["name"]: m for m in recipe.members}
    if unknown := sorted(set(names) - set(by_name)):
        raise DataError(f"--keep names no member of the recipe: {', '.join(unknown)}")
    for member in recipe.members:
        if member["name"] not in names and member.get("init_from") in names:
            # Its start would be the kept file, not the run the recipe trains it from.
            raise DataError(
                f"cannot train {member['name']!r} from {member['init_from']!r} while keeping it: keep both or neither"
            )
    # Probes first: their files are read without TensorFlow, so a wrong one is one line at once.
    kept = {}
    for name in sorted(names, key=lambda name: by_name[name]["kind"] != CLIP_PROBE):
        if by_name[name]["kind"] != CLIP_PROBE:
            quiet_libraries()
        kept[name] = kept_member(by_name[name], models_dir)
    return kept


def _seed_path(path: Path | None, seed: int | None, several: bool) -> Path | None:
    """Where one seed's table goes when `--seeds` makes several: NAME.seed-N.SUFFIX."""
    if path is None or not several:
        return path
    return path.with_name(f"{path.stem}.seed-{seed}{path.suffix}")


def cmd_cross_source(args: argparse.Namespace) -> int:
    """The cross-source table of a recipe (see pipeline/training/cross_source.py); with `--seeds`,
    one table per CNN training seed and each figure's mean and range over them."""
    from pipeline.training.cross_source import (
        compare_tables,
        cross_source_table,
        read_baseline,
        seed_spread,
        seed_spread_text,
        table_markdown,
    )
    from pipeline.training.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    if getattr(args, "pictures", False):
        # The same folds, weighed and decided as the engine weighs a picture's faces.
        recipe = recipe.weighed_as_pictures()
    seeds = getattr(args, "seeds", None) or [None]
    if len(set(seeds)) != len(seeds):
        raise PipelineError(f"--seeds names a seed twice: {' '.join(map(str, seeds))}")
    # NumPy and Keras take seeds from 0 to 2**32 - 1; a wrong one must fail here, not after hours.
    if bad := [seed for seed in seeds if seed is not None and not 0 <= seed < 2**32]:
        raise PipelineError(f"--seeds takes whole numbers from 0 to {2**32 - 1}, not {' '.join(map(str, bad))}")
    baseline_paths = getattr(args, "baseline", None) or []
    if len(baseline_paths) not in (0, 1, len(seeds)):
        raise PipelineError(f"--baseline takes one table, or one per seed ({len(seeds)}), not {len(baseline_paths)}")
    # One table for every seed, or each seed's own (the same recipe of the baseline, made with that seed).
    baselines = [(path, read_baseline(path)) for path in baseline_paths]
    baselines = baselines * len(seeds) if len(baselines) == 1 else baselines
    quiet_libraries()
    ensure_prepared(recipe.sources)
    tables = []
    for index, seed in enumerate(seeds):
        if seed is not None:
            print(f"\n## CNN training seed {seed}\n")
        json_path = _seed_path(args.json, seed, len(seeds) > 1)
        markdown_path = _seed_path(args.markdown, seed, len(seeds) > 1)
        table = cross_source_table(recipe, args.runs, args.held_out or None, resume=not args.fresh, cnn_seed=seed)
        markdown = table_markdown(table)
        print(markdown)
        margin = table["disagreement_margin"]
        print(
            f"\ndisagreement margin ({table['disagreement']}) measured on the held-out sources: "
            f"{margin if margin is not None else 'none (never needed)'}"
        )
        # Written before the comparison, which refuses tables of other folds: hours of folds are kept.
        if json_path:
            json_path.write_text(json.dumps(table, indent=2) + "\n")
        if markdown_path:
            markdown_path.write_text(markdown + "\n")
        if baselines:
            baseline_path, baseline = baselines[index]
            table["against_baseline"] = compare_tables(table, baseline)
            print(f"\nensemble's mean held-out ROC AUC against {baseline_path} (paired bootstrap, 95% interval):")
            for column, result in table["against_baseline"].items():
                low, high = result["interval"] or (float("nan"), float("nan"))
                print(f"  {column.replace('_', ' ')}: {result['difference']:+.3f} [{low:+.3f}, {high:+.3f}]")
            if json_path:
                json_path.write_text(json.dumps(table, indent=2) + "\n")
        tables.append(table)
    if len(tables) > 1:
        spread = seed_spread(tables)
        print(f"\n## Over the CNN training seeds {' / '.join(map(str, seeds))}\n")
        print(seed_spread_text(spread))
        if args.json:
            args.json.write_text(json.dumps({"seeds": seeds, **spread}, indent=2) + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.leave_out:
        args.held_out, args.fresh, args.markdown = args.leave_out, False, None
        return cmd_cross_source(args)
    if not args.dirs:
        raise PipelineError("evaluate needs folders to score, or --leave-out SOURCE")
    from pipeline.training.evaluate import evaluate, print_photo_verdicts, print_summary, write_json

    report = evaluate(
        list(args.dirs),
        args.split,
        args.models_dir,
        per_class=args.per_class,
        frames=args.frames,
        report_dir=args.report,
        reshare=args.reshare,
    )
    print_summary(report)
    print_photo_verdicts(report)
    if args.json:
        write_json(report, args.json)
    return 0


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        nargs="+",
        default=list(SOURCES),
        help="sources: names of prepared shared sources (see `prepare`) or real/+fake/ folders",
    )
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--train-per-class", type=int, default=3000, help="training images per class and data set")
    parser.add_argument("--val-per-class", type=int, default=400)
    parser.add_argument("--views", type=int, default=2, help="augmented views per training image")
    parser.add_argument(
        "--self-blend", type=float, default=0.5, help="share of real images that also give a self-blended fake (0: off)"
    )
    parser.add_argument("--trainable-blocks", type=int, default=4, help="upper backbone blocks to fine-tune")
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (early stopping on val AUC)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times the augmented views are redrawn (each later round fine-tunes on fresh views)",
    )
    parser.add_argument("--round-epochs", type=int, default=3, help="fine-tuning epochs in each round after the first")
    parser.add_argument("--round-lr", type=float, default=1e-4, help="learning rate of the rounds after the first")
    parser.add_argument(
        "--resume", action="store_true", help="continue a run folder's finished rounds instead of training anew"
    )
    parser.add_argument("--from-scratch", action="store_true", help="random initial weights instead of ImageNet")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the training-side subcommands to the CLI."""
    prepare = commands.add_parser(
        "prepare",
        help="turn a folder of labelled images and/or videos into face crops framed as the engine frames them",
    )
    prepare.add_argument("source", type=Path, help="a folder with real/ and/or fake/ (and optionally metadata.csv)")
    prepare.add_argument("out_dir", type=Path, help="where the crops go (a stopped run resumes here)")
    prepare.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    prepare.add_argument("--no-landmarks", action="store_true", help="skip the 468-point face mesh of each crop")
    prepare.add_argument("--limit", type=int, default=None, help="only the first N media files (a quick look)")
    prepare.set_defaults(run=cmd_prepare)

    train = commands.add_parser("train", help="train one ensemble member")
    train.add_argument("--backbone", required=True, choices=["mobilenetv2", "efficientnet_lite0", "efficientnetv2b0"])
    train.add_argument("--name", default=None, help="member name (default: the backbone's)")
    train.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from this trained .keras model of the same backbone instead of ImageNet",
    )
    train.add_argument("--out", type=Path, default=None, help="run folder (default runs/NAME)")
    train.add_argument(
        "--ensemble-dir",
        type=Path,
        default=None,
        help="also write a calibrated one-member ensemble here (for evaluate)",
    )
    _add_training_options(train)
    train.set_defaults(run=cmd_train)

    ensemble = commands.add_parser("train-ensemble", help="train the default members and write the calibrated ensemble")
    ensemble.add_argument("--members", default=",".join(MEMBERS))
    ensemble.add_argument(
        "--recipe", type=Path, default=None, help="JSON of each member's own training settings (see models/recipe.json)"
    )
    ensemble.add_argument("--runs", type=Path, default=Path("runs"))
    ensemble.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    ensemble.add_argument("--aggregation", default=DEFAULT_AGGREGATION)
    ensemble.add_argument(
        "--keep",
        nargs="+",
        default=None,
        metavar="MEMBER",
        help="take these recipe members as they are from --models-dir instead of training them (e.g. refit the "
        "probe and the calibration with the CNNs unchanged)",
    )
    _add_training_options(ensemble)
    ensemble.set_defaults(run=cmd_train_ensemble)

    evaluate = commands.add_parser(
        "evaluate",
        help="metrics and a report on real/+fake/ folders of crops or videos; or, with --leave-out, "
        "the recipe trained without a source and scored on it",
    )
    evaluate.add_argument("dirs", type=Path, nargs="*")
    evaluate.add_argument("--split", default=None, help="train, val, test or all (default: all)")
    evaluate.add_argument("--json", type=Path)
    evaluate.add_argument("--report", type=Path, help="folder for plots and summary.md")
    evaluate.add_argument(
        "--per-class", type=int, default=None, help="evaluate at most this many items per class and folder"
    )
    evaluate.add_argument("--frames", type=int, default=None, help="frames per video")
    evaluate.add_argument(
        "--reshare",
        action="store_true",
        help="score every face crop re-shared (downscaled 0.5-1x, JPEG q50-90, drawn per crop), pictures only",
    )
    evaluate.add_argument("--models-dir", type=Path, default=Settings().models_dir)
    evaluate.add_argument(
        "--leave-out", nargs="+", default=None, metavar="SOURCE", help="cross-source folds to run (see cross-source)"
    )
    evaluate.add_argument("--recipe", type=Path, default=REPO_ROOT / "models" / "recipe.json")
    evaluate.add_argument("--runs", type=Path, default=Path("runs"))
    evaluate.set_defaults(run=cmd_evaluate)

    cross = commands.add_parser(
        "cross-source",
        help="train the recipe on every source but one and score the one held out, for each source in turn",
    )
    cross.add_argument("--recipe", type=Path, default=REPO_ROOT / "models" / "recipe.json")
    cross.add_argument("--runs", type=Path, default=Path("runs"), help="where the folds keep their models (resumable)")
    cross.add_argument("--held-out", nargs="+", default=None, metavar="SOURCE", help="only these folds")
    cross.add_argument("--fresh", action="store_true", help="train every fold anew instead of resuming")
    cross.add_argument(
        "--pictures",
        action="store_true",
        help="weigh the members as the recipe's pictures block does (the engine's weighing of a picture's faces) "
        "instead of as videos are weighed; the folds are the same",
    )
    cross.add_argument("--json", type=Path, help="write the table as JSON")
    cross.add_argument("--markdown", type=Path, help="write the table as Markdown")
    cross.add_argument(
        "--baseline",
        type=Path,
        nargs="+",
        help="a table's JSON from an earlier run of the same folds: print the ensemble's paired difference to it; "
        "with --seeds, one table per seed (in the same order) compares each seed's table with its own",
    )
    cross.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help="train the CNN folds once per seed (the CLIP probe once: it draws nothing at random) and print each "
        "figure's mean and range over the seeds; with several, --json and --markdown write NAME.seed-N.SUFFIX per "
        "seed, and --json the spread itself",
    )
    cross.set_defaults(run=cmd_cross_source)
