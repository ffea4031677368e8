"""Report figures from precomputed arrays, returned as PNG bytes, or as captioned `ReportFigure`s (the ``*_report``
functions: the matplotlib Figure itself, so the report can export PNG and SVG).

The statistics come from elsewhere (`lib/evaluation.py`: ROC points, DeLong CIs, binned calibration, net
benefit); these functions only draw. Each figure is a matplotlib `Figure` on the Agg canvas (no pyplot, no
display), laid out with the constrained layout engine and saved at `DPI` without ``bbox_inches="tight"``, so
a figure's pixel size is its declared size in inches x DPI, whatever the labels.
"""

from __future__ import annotations

import base64
import html
import io
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.image
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from cssci_platform.lib.report.artifacts import ReportFigure

DPI = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POSITIVE_COLOUR = "#c0392b"
NEGATIVE_COLOUR = "#2e86c1"

# numbers to draw: a list or a 1-D numpy array (the figures read them with np.asarray)
Values = Sequence[float] | np.ndarray


# ------------------------------------------------------------------------------------------------- plumbing


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of `size` inches on the Agg canvas with constrained layout."""
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes at `DPI` (no tight bounding box: the size stays the declared one)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header; ValueError if `png` is not a PNG."""
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding in a self-contained HTML file."""
    png_size(png)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_img_tag(png: bytes, alt: str, css_class: str | None = None) -> str:
    """An ``<img>`` element with the PNG embedded, its pixel size and an escaped alt text."""
    width, height = png_size(png)
    klass = f' class="{html.escape(css_class)}"' if css_class else ""
    return (f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}" width="{width}" height="{height}"'
            f"{klass}>")


def report_figure(key: str, title: str, caption: str, figure: Figure) -> ReportFigure:
    """A `ReportFigure` (imported here: `artifacts` imports this module)."""
    from cssci_platform.lib.report.artifacts import ReportFigure

    return ReportFigure(key, title, caption, figure)


def cohort_size_text(n: int | None, n_positive: int | None, positive: str) -> str:
    """'n = 8, 3 with outcome 1' (or 'n = 8', or '' when n is unknown)."""
    if n is None:
        return ""
    return f"n = {n}" + (f", {n_positive} with outcome {positive}" if n_positive is not None else "")


def _check_unit_interval(name: str, values: np.ndarray) -> None:
    if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 1):
        raise ValueError(f"{name} must lie in [0, 1]")


# ---------------------------------------------------------------------------------------------------- ROC


@dataclass(frozen=True)
class RocCurve:
    """One model's ROC points; `auc` and `ci` (a (low, high) pair or ready text) go into the legend."""

    label: str
    fpr: Values
    tpr: Values
    auc: float | None = None
    ci: tuple[float, float] | str | None = None
    n: int | None = None  # patients the curve was computed on (for the caption)
    n_positive: int | None = None  # of whom with the positive outcome

    def legend(self) -> str:
        parts = []
        if self.auc is not None:
            parts.append(f"AUC {self.auc:.3f}")
        if isinstance(self.ci, str):
            parts.append(self.ci)
        elif self.ci is not None:
            parts.append(f"95% CI {self.ci[0]:.3f}-{self.ci[1]:.3f}")
        return f"{self.label} ({', '.join(parts)})" if parts else self.label


def _draw_roc(axes: Axes, curves: Sequence[RocCurve], title: str) -> None:
    for curve in curves:
        fpr, tpr = np.asarray(curve.fpr, dtype=float), np.asarray(curve.tpr, dtype=float)
        if fpr.shape != tpr.shape or fpr.ndim != 1:
            raise ValueError(f"ROC curve '{curve.label}': fpr and tpr must be 1-D arrays of equal length")
        _check_unit_interval(f"ROC curve '{curve.label}' fpr/tpr", np.concatenate([fpr, tpr]))
        axes.plot(fpr, tpr, linewidth=1.6, label=curve.legend())
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - Specificity", ylabel="Sensitivity", title=title)
    axes.set_aspect("equal")
    if curves:
        axes.legend(loc="lower right", fontsize="x-small")


def roc_plot(curves: Sequence[RocCurve], title: str = "", size: tuple[float, float] = (5.5, 5.5)) -> Figure:
    """ROC curves of several models on one cohort, with the chance diagonal (the Figure)."""
    figure = new_figure(size)
    _draw_roc(figure.add_subplot(), curves, title)
    return figure


def roc_figure(curves: Sequence[RocCurve], title: str = "", size: tuple[float, float] = (5.5, 5.5)) -> bytes:
    """ROC curves of several models on one cohort, with the chance diagonal."""
    return figure_png(roc_plot(curves, title, size))


def roc_panels_plot(by_cohort: Mapping[str, Sequence[RocCurve]], panel_inches: float = 4.5) -> Figure:
    """One ROC panel per cohort (e.g. training, test, validation), side by side (the Figure)."""
    if not by_cohort:
        raise ValueError("roc_panels needs at least one cohort")
    figure = new_figure((panel_inches * len(by_cohort), panel_inches))
    for axes, (cohort, curves) in zip(figure.subplots(1, len(by_cohort), squeeze=False)[0], by_cohort.items(),
                                      strict=True):
        _draw_roc(axes, curves, cohort)
    return figure


def roc_panels(by_cohort: Mapping[str, Sequence[RocCurve]], panel_inches: float = 4.5) -> bytes:
    """One ROC panel per cohort (e.g. training, test, validation), side by side."""
    return figure_png(roc_panels_plot(by_cohort, panel_inches))


ROC_READING = (
    "Each curve traces sensitivity against 1 - specificity as the threshold on the predicted probability moves; "
    "the legend gives the AUC with its 95% CI; the dashed diagonal is chance (AUC 0.5)."
)


def _cohort_sizes(curves: Sequence[RocCurve], positive: str) -> str:
    sized = [c for c in curves if c.n is not None]
    if not sized:
        return ""
    largest = max(sized, key=lambda c: c.n or 0)
    return cohort_size_text(largest.n, largest.n_positive, positive)


def roc_report(cohort: str, curves: Sequence[RocCurve], positive: str = "1", models: str = "the champions",
               key: str | None = None) -> ReportFigure:
    """ROC curves of `models` on one cohort as a captioned `ReportFigure` (key ``roc_<cohort>``); the caption gives
    the cohort's size from the curves' `n` / `n_positive`."""
    if not curves:
        raise ValueError(f"no model has predictions of both outcome classes in the {cohort} cohort: no ROC curve")
    size = _cohort_sizes(curves, positive)
    caption = f"ROC curves of {models} in the {cohort} cohort" + (f" ({size}). " if size else ". ") + ROC_READING
    return report_figure(key or _key(f"roc_{cohort}"), f"ROC curves, {cohort} cohort", caption,
                         roc_plot(curves, cohort))


def roc_panels_report(by_cohort: Mapping[str, Sequence[RocCurve]], positive: str = "1",
                      models: str = "the champions", key: str = "roc_cohorts") -> ReportFigure:
    """One ROC panel per cohort side by side as a captioned `ReportFigure`, each cohort's size in the caption."""
    cohorts = "; ".join(
        f"{cohort}" + (f" ({size})" if (size := _cohort_sizes(curves, positive)) else "")
        for cohort, curves in by_cohort.items()
    )
    caption = f"ROC curves of {models}, one panel per cohort: {cohorts}. {ROC_READING}"
    return report_figure(key, "ROC curves per cohort", caption, roc_panels_plot(by_cohort))


def _key(text: str) -> str:
    """A report artifact key (file stem) from free text: lower case, runs of other characters as '_'."""
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_") or "figure"


# -------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationCurve:
    """Binned calibration points: mean predicted risk and observed event fraction per bin."""

    label: str
    predicted: Values
    observed: Values


def calibration_figure(
    curves: Sequence[CalibrationCurve], title: str = "", size: tuple[float, float] = (5.5, 5.5)
) -> bytes:
    """Observed vs predicted risk per bin for each model, with the ideal (diagonal) line."""
    return figure_png(calibration_plot(curves, title, size))


def calibration_report(curves: Sequence[CalibrationCurve], cohort: str, n: int | None = None,
                       n_positive: int | None = None, positive: str = "1", models: str = "the champions",
                       key: str | None = None) -> ReportFigure:
    """The calibration plot of `models` on one cohort as a captioned `ReportFigure` (key ``calibration_<cohort>``)."""
    if not curves:
        raise ValueError(f"no model has predictions of both outcome classes in the {cohort} cohort: no calibration")
    size = cohort_size_text(n, n_positive, positive)
    caption = (
        f"Calibration of {models} in the {cohort} cohort" + (f" ({size})" if size else "") + ": the mean predicted "
        f"probability of outcome {positive} against the observed fraction with that outcome, in bins of predicted "
        "probability. Points on the dashed diagonal are perfectly calibrated; above it the model under-estimates the "
        "probability, below it over-estimates. With few patients per bin the points are very uncertain."
    )
    return report_figure(key or _key(f"calibration_{cohort}"), f"Calibration, {cohort} cohort", caption,
                         calibration_plot(curves, f"Calibration ({cohort})"))


def calibration_plot(
    curves: Sequence[CalibrationCurve], title: str = "", size: tuple[float, float] = (5.5, 5.5)
) -> Figure:
    """Observed vs predicted risk per bin for each model, with the ideal (diagonal) line (the Figure)."""
    figure = new_figure(size)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="Ideal")
    for curve in curves:
        predicted, observed = np.asarray(curve.predicted, dtype=float), np.asarray(curve.observed, dtype=float)
        if predicted.shape != observed.shape or predicted.ndim != 1:
            raise ValueError(f"calibration curve '{curve.label}': predicted and observed must match in length")
        _check_unit_interval(f"calibration curve '{curve.label}'", np.concatenate([predicted, observed]))
        axes.plot(predicted, observed, marker="o", markersize=4, linewidth=1.4, label=curve.label)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="Predicted probability", ylabel="Observed fraction", title=title)
    axes.set_aspect("equal")
    axes.legend(loc="upper left", fontsize="x-small")
    return figure


# ----------------------------------------------------------------------------------------- decision curves


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit of one strategy at each threshold probability."""

    label: str
    net_benefit: Values


def decision_curve_figure(
    thresholds: Values,
    models: Sequence[DecisionCurve],
    treat_all: Values,
    treat_none: Values | None = None,
    title: str = "",
    size: tuple[float, float] = (6.5, 4.5),
    floor: float = -0.05,
) -> bytes:
    """Net benefit vs threshold probability for models, treat-all and treat-none (zero unless given).

    The y axis runs from `floor` (treat-all falls steeply below zero) to just above the highest curve.
    """
    return figure_png(decision_curve_plot(thresholds, models, treat_all, treat_none, title, size, floor))


def decision_curve_report(thresholds: Values, models: Sequence[DecisionCurve], treat_all: Values, cohort: str,
                          n: int | None = None, n_positive: int | None = None, positive: str = "1",
                          key: str | None = None) -> ReportFigure:
    """Decision curves on one cohort as a captioned `ReportFigure` (key ``decision_curve_<cohort>``)."""
    if not models:
        raise ValueError(f"no model has predictions of both outcome classes in the {cohort} cohort: no decision curve")
    size = cohort_size_text(n, n_positive, positive)
    caption = (
        f"Decision curves in the {cohort} cohort" + (f" ({size})" if size else "") + ": the net benefit of acting on "
        f"the model's predicted probability of outcome {positive} at each threshold probability, against acting on "
        "every patient (treat all) and on none (treat none, net benefit 0). A model helps over the range of "
        "thresholds where its curve lies above both references."
    )
    figure = decision_curve_plot(thresholds, models, treat_all, title=f"Decision curves ({cohort})")
    return report_figure(key or _key(f"decision_curve_{cohort}"), f"Decision curves, {cohort} cohort", caption,
                         figure)


def decision_curve_plot(
    thresholds: Values,
    models: Sequence[DecisionCurve],
    treat_all: Values,
    treat_none: Values | None = None,
    title: str = "",
    size: tuple[float, float] = (6.5, 4.5),
    floor: float = -0.05,
) -> Figure:
    """`decision_curve_figure`'s Figure."""
    x = np.asarray(thresholds, dtype=float)
    _check_unit_interval("thresholds", x)
    none = np.zeros_like(x) if treat_none is None else np.asarray(treat_none, dtype=float)
    strategies = [*models, DecisionCurve("Treat all", treat_all), DecisionCurve("Treat none", none)]
    for strategy in strategies:
        if np.shape(strategy.net_benefit) != x.shape:
            raise ValueError(f"decision curve '{strategy.label}' has {np.size(strategy.net_benefit)} values "
                             f"for {x.size} thresholds")
    figure = new_figure(size)
    axes = figure.add_subplot()
    for model in models:  # above the references: a model that treats everyone stays visible on treat-all
        axes.plot(x, np.asarray(model.net_benefit, dtype=float), linewidth=1.6, label=model.label, zorder=3)
    axes.plot(x, np.asarray(treat_all, dtype=float), color="grey", linewidth=1.0, label="Treat all", zorder=2)
    axes.plot(x, none, color="black", linewidth=1.0, linestyle="--", label="Treat none", zorder=2)
    top = max(float(np.nanmax(np.asarray(s.net_benefit, dtype=float))) for s in strategies)
    axes.set(xlim=(float(x.min()), float(x.max())), ylim=(floor, max(top * 1.1, 0.05)),
             xlabel="Threshold probability", ylabel="Net benefit", title=title)
    axes.legend(loc="upper right", fontsize="x-small")
    return figure


# ------------------------------------------------------------------------------------------ Grad-CAM gallery


def gradcam_gallery(
    images: Sequence[Path | str],
    captions: Sequence[str] | None = None,
    columns: int = 4,
    tile_inches: float = 2.2,
    title: str | None = None,
) -> bytes:
    """A grid of PNG files (Grad-CAM overlays), `columns` per row, each with its caption below."""
    return figure_png(gradcam_plot(images, captions, columns, tile_inches, title))


def gradcam_report(images: Sequence[Path | str], captions: Sequence[str] | None = None, what: str = "",
                   key: str = "gradcam") -> ReportFigure:
    """The Grad-CAM gallery as a captioned `ReportFigure`; `what` says which network and patients are shown."""
    caption = (
        f"Grad-CAM heat maps of {what or 'the fine-tuned networks'} ({len(images)} image(s)), each over the input "
        "slice: warm colours mark the regions that raised the network's output for the predicted class most. They "
        "show where the network looked, not why, and are not a segmentation."
    )
    return report_figure(key, "Grad-CAM gallery", caption, gradcam_plot(images, captions))


def gradcam_plot(
    images: Sequence[Path | str],
    captions: Sequence[str] | None = None,
    columns: int = 4,
    tile_inches: float = 2.2,
    title: str | None = None,
) -> Figure:
    """`gradcam_gallery`'s Figure."""
    if not images:
        raise ValueError("gradcam_gallery needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    figure = new_figure((columns * tile_inches, rows * (tile_inches + 0.3) + (0.4 if title else 0.0)))
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.ravel()):
        axes.set_axis_off()
        if index < len(images):
            axes.imshow(matplotlib.image.imread(Path(images[index])), interpolation="nearest")
            axes.set_title(captions[index] if captions else Path(images[index]).stem, fontsize="small", y=-0.12)
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------------------- feature importance


def feature_importance_figure(
    names: Sequence[str],
    values: Sequence[float],
    top_n: int = 20,
    title: str = "",
    xlabel: str = "Importance",
    width_inches: float = 6.5,
) -> bytes:
    """Horizontal bars of the `top_n` largest |values| (largest on top); negative values (e.g. LASSO
    coefficients) in a second colour. Height grows with the number of bars shown."""
    return figure_png(feature_importance_plot(names, values, top_n, title, xlabel, width_inches))


def feature_importance_report(names: Sequence[str], values: Sequence[float], model: str, what: str,
                              top_n: int = 20, xlabel: str = "Importance", key: str | None = None) -> ReportFigure:
    """`feature_importance_figure` as a captioned `ReportFigure`; `what` says what the values are and on which
    patients (e.g. 'impurity importance of the fitted forest, 32 training patients')."""
    shown = min(top_n, len(names))
    caption = (f"The {shown} features of {model} with the largest {what} (of {len(names)}), largest on top; "
               "red bars are positive values, blue negative.")
    return report_figure(key or _key(f"importance_{model}"), f"Feature importance, {model}", caption,
                         feature_importance_plot(names, values, top_n, xlabel=xlabel))


def feature_importance_plot(
    names: Sequence[str],
    values: Sequence[float],
    top_n: int = 20,
    title: str = "",
    xlabel: str = "Importance",
    width_inches: float = 6.5,
) -> Figure:
    """`feature_importance_figure`'s Figure."""
    scores = np.asarray(values, dtype=float)
    if scores.shape != (len(names),):
        raise ValueError(f"{len(names)} names for {scores.size} values")
    order = np.argsort(-np.abs(scores), kind="stable")[:top_n][::-1]
    figure = new_figure((width_inches, 0.3 * order.size + 1.2))
    axes = figure.add_subplot()
    colours = [NEGATIVE_COLOUR if scores[i] < 0 else POSITIVE_COLOUR for i in order]
    axes.barh(np.arange(order.size), scores[order], color=colours)
    axes.set_yticks(np.arange(order.size), [str(names[i]) for i in order], fontsize="x-small")
    axes.axvline(0, color="black", linewidth=0.6)
    axes.set(xlabel=xlabel, title=title)
    return figure


# ---------------------------------------------------------------------------------------------- multiclass


def roc_grid(panels: Mapping[str, Sequence[RocCurve]], columns: int = 3, panel_inches: float = 4.0,
             title: str | None = None) -> bytes:
    """ROC panels in a grid, `columns` per row (e.g. one one-vs-rest panel per class); unused cells stay blank."""
    return figure_png(roc_grid_plot(panels, columns, panel_inches, title))


def roc_grid_report(panels: Mapping[str, Sequence[RocCurve]], cohort: str, n: int | None = None,
                    models: str = "the champions", key: str | None = None) -> ReportFigure:
    """One-vs-rest ROC panels (one per class) on one cohort as a captioned `ReportFigure`."""
    if not panels:
        raise ValueError(f"no class has predictions of both kinds in the {cohort} cohort: no ROC curve")
    size = f" (n = {n})" if n is not None else ""
    caption = (f"One-vs-rest ROC curves of {models} in the {cohort} cohort{size}, one panel per outcome class: each "
               "class against all others. " + ROC_READING)
    return report_figure(key or _key(f"roc_classes_{cohort}"), f"ROC curves per class, {cohort} cohort", caption,
                         roc_grid_plot(panels))


def roc_grid_plot(panels: Mapping[str, Sequence[RocCurve]], columns: int = 3, panel_inches: float = 4.0,
                  title: str | None = None) -> Figure:
    """`roc_grid`'s Figure."""
    if not panels:
        raise ValueError("roc_grid needs at least one panel")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure((panel_inches * columns, panel_inches * rows + (0.4 if title else 0.0)))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, (name, curves) in zip(grid, panels.items()):
        _draw_roc(axes, curves, name)
    for axes in grid[len(panels):]:
        axes.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure


def confusion_matrix_figure(counts: np.ndarray, classes: Sequence[str], title: str = "",
                            cell_inches: float = 0.9) -> bytes:
    """Confusion matrix (rows: true class, columns: predicted class) annotated with counts; the shade is the
    row fraction (recall of the true class), so rare classes read as clearly as common ones."""
    return figure_png(confusion_matrix_plot(counts, classes, title, cell_inches))


def confusion_matrix_report(counts: np.ndarray, classes: Sequence[str], model: str, cohort: str,
                            key: str | None = None) -> ReportFigure:
    """The confusion matrix of one model on one cohort as a captioned `ReportFigure`."""
    n = int(np.asarray(counts).sum())
    caption = (f"Confusion matrix of {model} in the {cohort} cohort (n = {n}): rows are the true classes, columns the "
               "predicted (most probable) class; each cell gives the number of patients and is shaded by the fraction "
               "of its row (the recall of the true class), so the diagonal reads as per-class sensitivity.")
    return report_figure(key or _key(f"confusion_{model}_{cohort}"), f"Confusion matrix, {model}, {cohort} cohort",
                         caption, confusion_matrix_plot(counts, classes, title=model))


def confusion_matrix_plot(counts: np.ndarray, classes: Sequence[str], title: str = "",
                          cell_inches: float = 0.9) -> Figure:
    """`confusion_matrix_figure`'s Figure."""
    matrix = np.asarray(counts, dtype=float)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"a {len(classes)}-class confusion matrix must be {len(classes)} x {len(classes)}, "
                         f"got {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = cell_inches * len(classes) + 2.0
    figure = new_figure((side + 0.8, side))
    axes = figure.add_subplot()
    image = axes.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{int(count)}", ha="center", va="center", fontsize="small",
                  color="white" if fraction[row, column] > 0.6 else "black")
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right", fontsize="small")
    axes.set_yticks(ticks, [str(c) for c in classes], fontsize="small")
    axes.set(xlabel="Predicted class", ylabel="True class", title=title)
    figure.colorbar(image, ax=axes, shrink=0.8, label="Fraction of the true class")
    return figure


def stacked_importance_figure(names: Sequence[str], values: np.ndarray, groups: Sequence[str], top_n: int = 15,
                              title: str = "", xlabel: str = "mean |SHAP value|", width_inches: float = 7.5) -> bytes:
    """Horizontal bars of the `top_n` features with the largest row sums of `values` (features x groups, e.g.
    mean |SHAP| per class), each bar stacked by group (shap's multiclass summary bar layout); largest on top."""
    return figure_png(stacked_importance_plot(names, values, groups, top_n, title, xlabel, width_inches))


def stacked_importance_plot(names: Sequence[str], values: np.ndarray, groups: Sequence[str], top_n: int = 15,
                            title: str = "", xlabel: str = "mean |SHAP value|", width_inches: float = 7.5) -> Figure:
    """`stacked_importance_figure`'s Figure."""
    matrix = np.asarray(values, dtype=float)
    if matrix.shape != (len(names), len(groups)):
        raise ValueError(f"values must be {len(names)} features x {len(groups)} groups, got {matrix.shape}")
    order = np.argsort(-matrix.sum(axis=1), kind="stable")[:top_n][::-1]
    figure = new_figure((width_inches, 0.3 * order.size + 1.6))
    axes = figure.add_subplot()
    left = np.zeros(order.size)
    colours = matplotlib.colormaps["tab10"]
    for column, group in enumerate(groups):
        axes.barh(np.arange(order.size), matrix[order, column], left=left, color=colours(column % 10),
                  label=str(group))
        left += matrix[order, column]
    axes.set_yticks(np.arange(order.size), [str(names[i]) for i in order], fontsize="x-small")
    axes.set(xlabel=xlabel, title=title)
    axes.legend(loc="lower right", fontsize="x-small")
    return figure
