"""The zoo's results as markdown tables, for the materialization metadata of trained_models and model_results."""

from __future__ import annotations

import pandas as pd

from cssci_platform.lib.modeling.training import FailedFit, TrainedModel


def failure_table(failures: list[FailedFit]) -> str:
    if not failures:
        return "no fit failed"
    lines = ["| signature | classifier | mode | stage | reason |", "|---|---|---|---|---|"]
    lines += [
        f"| {f.spec.signature.name} | {f.spec.classifier} | {f.spec.mode} | {f.stage} | {f.reason[:200]} |"
        for f in failures
    ]
    return "\n".join(lines)


def _test_auc(model: TrainedModel) -> float:
    test = model.metrics.get("test", {})
    return test.get("auc", test.get("auc_macro_ovr", float("nan")))


def mode_delta_table(models: list[TrainedModel]) -> str:
    """Test AUC per model in both modes: how optimistic the published order of operations is on this cohort."""
    by_mode = {(m.spec.name, m.spec.mode): _test_auc(m) for m in models}
    names = sorted({name for name, _ in by_mode})
    lines = [
        "| model | leakage_safe test AUC | paper_faithful test AUC | paper_faithful - leakage_safe |",
        "|---|---|---|---|",
    ]
    for name in names:
        safe, faithful = (
            by_mode.get((name, "leakage_safe"), float("nan")),
            by_mode.get((name, "paper_faithful"), float("nan")),
        )
        lines.append(f"| {name} | {safe:.3f} | {faithful:.3f} | {faithful - safe:+.3f} |")
    return "\n".join(lines)


def fold_summary(fits: list[tuple[str, TrainedModel]]) -> str:
    """Test AUC mean +- SD over folds per model and mode (one fold: the same as the results table)."""
    frame = pd.DataFrame([{"model": m.spec.name, "mode": m.spec.mode, "fold": f, "auc": _test_auc(m)} for f, m in fits])
    if frame.empty:
        return "no models"
    grouped = frame.groupby(["model", "mode"])["auc"].agg(["mean", "std", "count"]).reset_index()
    lines = ["| model | mode | folds | test AUC mean | SD |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.model} | {r.mode} | {r['count']} | {r['mean']:.3f} | {r['std']:.3f} |" for _, r in grouped.iterrows()
    ]
    return "\n".join(lines)


def champion_table(champions: dict) -> str:
    lines = ["| signature | champion | registered model | version | CV AUC |", "|---|---|---|---|---|"]
    lines += [
        f"| {s} | {c['model']} | {c['registered_model']} | {c['version']} | {c['cv_auc']:.3f} |"
        for s, c in champions.items()
    ]
    return "\n".join(lines)


def results_table(models: list[TrainedModel]) -> str:
    lines = ["| model | mode | CV AUC | test AUC | test acc | test sens | test spec |", "|---|---|---|---|---|---|---|"]
    for m in models:
        test, nan = m.metrics.get("test", {}), float("nan")
        auc = test.get("auc", test.get("auc_macro_ovr", nan))
        accuracy = test.get("accuracy", test.get("top1_accuracy", nan))
        lines.append(
            f"| {m.spec.name} | {m.spec.mode} | {m.cv_score_mean:.3f} | {auc:.3f} | {accuracy:.3f} "
            f"| {test.get('sensitivity', nan):.3f} | {test.get('specificity', nan):.3f} |"
        )
    return "\n".join(lines)
