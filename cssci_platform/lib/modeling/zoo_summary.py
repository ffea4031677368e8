"""The zoo's results as markdown tables, for the materialization metadata of trained_models and model_results."""

from __future__ import annotations

from math import nan

import pandas as pd

from cssci_platform.lib.messages import markdown_table, shorten
from cssci_platform.lib.modeling.training import FailedFit, TrainedModel


def failure_table(failures: list[FailedFit]) -> str:
    if not failures:
        return "no fit failed"
    rows = [(f.spec.signature.name, f.spec.classifier, f.spec.mode, f.stage, shorten(f.reason, 200)) for f in failures]
    return markdown_table(["signature", "classifier", "mode", "stage", "reason"], rows)


def _test_auc(model: TrainedModel) -> float:
    test = model.metrics.get("test", {})
    return test.get("auc", test.get("auc_macro_ovr", nan))


def mode_delta_table(models: list[TrainedModel]) -> str:
    """Test AUC per model in both modes: how optimistic the published order of operations is on this cohort."""
    by_mode = {(m.spec.name, m.spec.mode): _test_auc(m) for m in models}
    names = sorted({name for name, _ in by_mode})
    rows = []
    for name in names:
        safe, faithful = by_mode.get((name, "leakage_safe"), nan), by_mode.get((name, "paper_faithful"), nan)
        rows.append((name, f"{safe:.3f}", f"{faithful:.3f}", f"{faithful - safe:+.3f}"))
    headers = ["model", "leakage_safe test AUC", "paper_faithful test AUC", "paper_faithful - leakage_safe"]
    return markdown_table(headers, rows)


def fold_summary(fits: list[tuple[str, TrainedModel]]) -> str:
    """Test AUC mean +- SD over folds per model and mode (one fold: the same as the results table)."""
    frame = pd.DataFrame([{"model": m.spec.name, "mode": m.spec.mode, "fold": f, "auc": _test_auc(m)} for f, m in fits])
    if frame.empty:
        return "no models"
    grouped = frame.groupby(["model", "mode"])["auc"].agg(["mean", "std", "count"]).reset_index()
    rows = [(r["model"], r["mode"], r["count"], f"{r['mean']:.3f}", f"{r['std']:.3f}") for _, r in grouped.iterrows()]
    return markdown_table(["model", "mode", "folds", "test AUC mean", "SD"], rows)


def champion_table(champions: dict) -> str:
    rows = [(s, c["model"], c["registered_model"], c["version"], f"{c['cv_auc']:.3f}") for s, c in champions.items()]
    return markdown_table(["signature", "champion", "registered model", "version", "CV AUC"], rows)


def results_table(models: list[TrainedModel]) -> str:
    rows = []
    for m in models:
        test = m.metrics.get("test", {})
        auc = test.get("auc", test.get("auc_macro_ovr", nan))
        accuracy = test.get("accuracy", test.get("top1_accuracy", nan))
        values = (m.cv_score_mean, auc, accuracy, test.get("sensitivity", nan), test.get("specificity", nan))
        rows.append((m.spec.name, m.spec.mode, *(f"{value:.3f}" for value in values)))
    return markdown_table(["model", "mode", "CV AUC", "test AUC", "test acc", "test sens", "test spec"], rows)
