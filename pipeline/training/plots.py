"""The evaluation report folder: ROC curves, reliability diagram, confusion matrix, t-SNE of the
features each member classifies, and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from pipeline.engine.clip import PATCH_MAX
from pipeline.engine.ensemble import Ensemble, predict_crops
from pipeline.training.data import Sample, balanced_subset, read_face


def _figure(width: float, height: float) -> Any:
    # A bare Figure needs no pyplot backend, so plotting here never changes the caller's
    # (a notebook's inline backend keeps working).
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def scored(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels and probabilities of the faces a model scored (a costly member, CLIP, leaves
    NaN where it did not look)."""
    known = np.isfinite(probabilities)
    return labels[known], probabilities[known]


def plot_roc(table: Any, path: Path, title: str) -> None:
    fig = _figure(4.5, 4.5)
    ax = fig.subplots()
    for name, all_probabilities in table.probabilities.items():
        labels, probabilities = scored(table.labels, all_probabilities)
        if len(set(labels.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, probabilities)
        ax.plot(fpr, tpr, label=name, linewidth=2.5 if name == "ensemble" else 1.2)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reliability(table: Any, path: Path, title: str, bins: int = 10) -> None:
    fig = _figure(4.5, 4.5)
    ax = fig.subplots()
    for name, all_probabilities in table.probabilities.items():
        labels, probabilities = scored(table.labels, all_probabilities)
        if not len(labels):
            continue
        observed, predicted = calibration_curve(labels, probabilities, n_bins=bins, strategy="uniform")
        ax.plot(predicted, observed, "o-", label=name, linewidth=2.5 if name == "ensemble" else 1.2)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.set_xlabel("predicted fake probability")
    ax.set_ylabel("observed share of fakes")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(confusion: dict[str, int], path: Path, title: str) -> None:
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig = _figure(3.8, 3.5)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black", fontsize=12)
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def member_features(ensemble: Ensemble, crops: np.ndarray) -> dict[str, np.ndarray]:
    """The features each member classifies, by name: a CNN's pooled backbone features (the layer
    before its classifier), or the CLIP features a probe reads, from one encoder pass for every
    probe (the encoder is nearly all of a probe's cost)."""
    import keras

    encoded = ensemble.probe_features(list(ensemble.probes), crops) if ensemble.probes else None
    features = {}
    for name in ensemble.member_names:
        if name in ensemble.probes:
            probe = ensemble.probes[name]
            if probe.feature == PATCH_MAX:  # the patch each crop is scored by: its largest patch logit
                patches = encoded.named(PATCH_MAX, probe.block)
                features[name] = patches[np.arange(len(patches)), probe.patch_logits(patches).argmax(axis=1)]
            else:
                features[name] = probe.values(encoded)
            continue
        model = ensemble.keras_model(name)
        pooled = keras.Model(model.input, model.get_layer("pool").output)
        features[name] = predict_crops(pooled, crops, ensemble.member(name).input_size, batch_size=64)
    return features


def plot_tsne(ensemble: Ensemble, samples: list[Sample], path: Path, per_class: int = 300) -> None:
    """t-SNE of the features each member classifies, coloured by label and marked by source."""
    from sklearn.manifold import TSNE

    subset = balanced_subset(samples, per_class, seed=0)
    crops = np.stack([read_face(s.path, 224) for s in subset])
    labels = np.asarray([s.label for s in subset])
    sources = sorted({s.source for s in subset})
    markers = dict(zip(sources, "o^sDv"))
    names = ensemble.member_names
    fig = _figure(4.8 * len(names), 4.5)
    axes = fig.subplots(1, len(names), squeeze=False)
    features = member_features(ensemble, crops)
    for ax, name in zip(axes[0], names):
        embedded = TSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(features[name])
        for source in sources:
            for label, colour, text in ((0, "tab:blue", "real"), (1, "tab:red", "fake")):
                picked = (labels == label) & np.asarray([s.source == source for s in subset])
                ax.scatter(
                    *embedded[picked].T, s=8, c=colour, marker=markers[source], alpha=0.6, label=f"{text} ({source})"
                )
        ax.set_title(f"t-SNE of {name} features")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(
    report: dict[str, Any], tables: dict[str, Any], ensemble: Ensemble, images: list[Sample], out_dir: Path
) -> None:
    """Pictures, metrics.json and summary.md in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    pictures = []
    for level, table in tables.items():
        plot_roc(table, out_dir / f"roc_{level}.png", f"ROC, {level} level")
        plot_reliability(table, out_dir / f"reliability_{level}.png", f"Reliability, {level} level")
        metrics = report["frame_level" if level == "frame" else "video_level"]
        if level == "video":
            metrics = metrics[report["video_level_default_rule"]]
        plot_confusion(
            metrics["ensemble"]["all"]["confusion"], out_dir / f"confusion_{level}.png", f"Ensemble, {level} level"
        )
        pictures += [f"roc_{level}.png", f"reliability_{level}.png", f"confusion_{level}.png"]
    if images:
        plot_tsne(ensemble, images, out_dir / "tsne.png")
        pictures.append("tsne.png")
    lines = [
        "# Evaluation report",
        "",
        f"Data: {', '.join(report['data'])} (split: {report['split']}). Threshold {report['threshold']:.3f}, "
        f"uncertain band {report['uncertain_band'][0]:.3f}-{report['uncertain_band'][1]:.3f}.",
        f"Models: {', '.join(f'{k} ({v})' for k, v in report['models'].items())}.",
        "",
    ]
    lines += metrics_markdown(report)
    lines += ["", *[f"![{p}]({p})" for p in pictures], ""]
    (out_dir / "summary.md").write_text("\n".join(lines))


def metrics_markdown(report: dict[str, Any]) -> list[str]:
    """Markdown tables of the metrics, one per level (and rule, for videos)."""
    lines: list[str] = []
    levels: list[tuple[str, dict[str, Any]]] = []
    if "frame_level" in report:
        levels.append(("Frame level (each face)", report["frame_level"]))
    for rule, models in report.get("video_level", {}).items():
        default = " (default rule)" if rule == report.get("video_level_default_rule") else ""
        levels.append((f"Video level, '{rule}' rule{default}", models))
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
    for title, models in levels:
        lines += [
            f"### {title}",
            "",
            "| model | subset | n | ROC AUC | AP | EER | acc | precision | recall | F1 | ECE |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model, subsets in models.items():
            for subset, m in subsets.items():
                if isinstance(m, dict):
                    lines.append(
                        f"| {model} | {subset} | {m['n']} | {fmt(m['roc_auc'])} | {fmt(m['average_precision'])} | {fmt(m['eer'])} | "
                        f"{fmt(m['accuracy'])} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} | {fmt(m['ece'])} |"
                    )
        timing = {m: s["seconds_per_face"] for m, s in models.items() if "seconds_per_face" in s}
        if timing:
            lines += ["", "Inference time per face: " + ", ".join(f"{m} {t * 1000:.1f} ms" for m, t in timing.items())]
        lines.append("")
    return lines
