"""Nomogram of a fitted logistic model, drawn with matplotlib, and the model equation as text.

Points (the convention of R's rms::nomogram): a variable's contribution to the linear predictor is b·x for a
continuous variable over its range [low, high], or the level's coefficient (0 for the reference) for a
categorical one. The variable whose contribution spans the widest range gets 0-100 points; every variable's
points are ``100 · (contribution - its smallest contribution) / widest range``, so one point is worth the same
log-odds on every axis. Total points T therefore map to the linear predictor by
``logit(p) = b0 + sum_v min contribution_v + T · widest range / 100``, which the probability axis draws.
Values outside a continuous variable's [low, high] still get (extrapolated) points; the axis shows the range.

`Nomogram.points`, `total_points`, `probability_from_points` and `points_for_probability` are the math;
`nomogram_figure` only draws it (PNG bytes); `nomogram_report` returns the drawing with the model's equation under it
as a captioned `ReportFigure`, and `nomogram_equation_table` the equation's terms as a `ReportTable`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable
from cssci_platform.lib.report.figures import figure_png, new_figure

PROBABILITY_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ContinuousAxis:
    """A continuous predictor: its coefficient and the range its axis covers."""

    name: str
    coefficient: float
    low: float
    high: float

    def contribution(self, value: Any) -> float:
        return self.coefficient * float(value)

    def contribution_range(self) -> tuple[float, float]:
        ends = sorted((self.contribution(self.low), self.contribution(self.high)))
        return ends[0], ends[1]


@dataclass(frozen=True)
class CategoricalAxis:
    """A categorical predictor: coefficient per level, the reference level at 0."""

    name: str
    effects: Mapping[Any, float]

    def contribution(self, value: Any) -> float:
        if value not in self.effects:
            raise ValueError(f"'{self.name}' has no level {value!r}; levels are {list(self.effects)}")
        return float(self.effects[value])

    def contribution_range(self) -> tuple[float, float]:
        return min(self.effects.values()), max(self.effects.values())


NomogramAxis = ContinuousAxis | CategoricalAxis


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class Nomogram:
    """Points arithmetic of a logistic model ``logit(p) = intercept + sum of contributions``."""

    intercept: float
    axes: tuple[NomogramAxis, ...]

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("a nomogram needs at least one variable")
        if self.widest_range() <= 0:
            raise ValueError("every variable has zero effect: nothing to draw")

    def axis(self, name: str) -> NomogramAxis:
        for axis in self.axes:
            if axis.name == name:
                return axis
        raise KeyError(f"no variable '{name}' in the nomogram")

    def widest_range(self) -> float:
        return max(high - low for low, high in (a.contribution_range() for a in self.axes))

    def points_per_logit(self) -> float:
        return 100.0 / self.widest_range()

    def variable_points(self, name: str, value: Any) -> float:
        axis = self.axis(name)
        return (axis.contribution(value) - axis.contribution_range()[0]) * self.points_per_logit()

    def points(self, patient: Mapping[str, Any]) -> dict[str, float]:
        return {axis.name: self.variable_points(axis.name, patient[axis.name]) for axis in self.axes}

    def total_points(self, patient: Mapping[str, Any]) -> float:
        return sum(self.points(patient).values())

    def max_total_points(self) -> float:
        return sum((high - low) * self.points_per_logit() for low, high in (a.contribution_range() for a in self.axes))

    def linear_predictor_from_points(self, total: float) -> float:
        floor = sum(a.contribution_range()[0] for a in self.axes)
        return self.intercept + floor + total / self.points_per_logit()

    def probability_from_points(self, total: float) -> float:
        return _expit(self.linear_predictor_from_points(total))

    def points_for_probability(self, probability: float) -> float:
        logit = math.log(probability / (1.0 - probability))
        floor = sum(a.contribution_range()[0] for a in self.axes)
        return (logit - self.intercept - floor) * self.points_per_logit()

    def linear_predictor(self, patient: Mapping[str, Any]) -> float:
        """The model's own linear predictor (no points involved)."""
        return self.intercept + sum(axis.contribution(patient[axis.name]) for axis in self.axes)

    def probability(self, patient: Mapping[str, Any]) -> float:
        return _expit(self.linear_predictor(patient))

    def terms(self) -> dict[str, float]:
        """Coefficient per term of the linear predictor: continuous variables by name, categorical levels as
        ``variable[level]`` (the reference level, 0, left out)."""
        terms: dict[str, float] = {}
        for axis in self.axes:
            if isinstance(axis, ContinuousAxis):
                terms[axis.name] = axis.coefficient
            else:
                terms.update({f"{axis.name}[{level}]": b for level, b in axis.effects.items() if b != 0})
        return terms

    def equation(self, digits: int = 3) -> str:
        return model_equation(self.intercept, self.terms(), digits)


def model_equation(intercept: float, coefficients: Mapping[str, float], digits: int = 3,
                   response: str = "logit(p)") -> str:
    """``logit(p) = b0 + b1 × x1 - b2 × x2 ...`` with `digits` decimals."""
    text = f"{response} = {intercept:.{digits}f}"
    for name, b in coefficients.items():
        text += f" {'-' if b < 0 else '+'} {abs(b):.{digits}f} × {name}"
    return text


def nomogram_from_coefficients(
    intercept: float,
    coefficients: Mapping[str, float],
    ranges: Mapping[str, tuple[float, float]],
    categorical: Mapping[str, Mapping[Any, float]] | None = None,
) -> Nomogram:
    """Continuous variables from `coefficients` with their `ranges`; categorical ones as level -> effect."""
    axes: list[NomogramAxis] = [ContinuousAxis(name, float(b), *map(float, ranges[name]))
                                for name, b in coefficients.items()]
    axes += [CategoricalAxis(name, dict(effects)) for name, effects in (categorical or {}).items()]
    return Nomogram(float(intercept), tuple(axes))


def unstandardized(
    intercept: float, coefficients: Mapping[str, float], means: Mapping[str, float], scales: Mapping[str, float]
) -> tuple[float, dict[str, float]]:
    """Coefficients of a model fitted on z-scored inputs ((x - mean) / scale), re-expressed per raw unit:
    b_raw = b / scale and b0_raw = b0 - sum b · mean / scale. Variables missing from `means` stay as they are
    (e.g. the Rad-score of the combined model, which is not standardised)."""
    raw = {name: b / scales[name] if name in means else b for name, b in coefficients.items()}
    shift = sum(b * means[name] / scales[name] for name, b in coefficients.items() if name in means)
    return intercept - shift, raw


def nomogram_from_fit(fit: Any, ranges: Mapping[str, tuple[float, float]] | None = None) -> Nomogram:
    """From a `cssci_platform.lib.clinical.LogisticFit`: continuous axes over the fitted data's range (or
    `ranges`), categorical axes with the reference level at 0."""
    ranges = {**fit.ranges, **(ranges or {})}
    axes: list[NomogramAxis] = []
    for predictor, terms in fit.terms.items():
        if predictor in fit.levels:
            levels = fit.levels[predictor]
            effects = {levels[0]: 0.0, **{lv: fit.coefficients[t] for lv, t in zip(levels[1:], terms, strict=True)}}
            axes.append(CategoricalAxis(predictor, effects))
        else:
            axes.append(ContinuousAxis(predictor, fit.coefficients[predictor], *ranges[predictor]))
    return Nomogram(fit.intercept, tuple(axes))


# --------------------------------------------------------------------------------------------------- drawing

LABEL_X = -0.03


def nomogram_figure(nomogram: Nomogram, title: str = "", width_inches: float = 9.0,
                    probability_ticks: Sequence[float] = PROBABILITY_TICKS, outcome: str = "Risk") -> bytes:
    """Points axis, one axis per variable, total points and the probability axis, as PNG bytes."""
    return figure_png(nomogram_plot(nomogram, title, width_inches, probability_ticks, outcome))


def nomogram_report(
    nomogram: Nomogram,
    n_training: int,
    outcome: str = "P(outcome 1)",
    note: str = "",
    key: str = "nomogram",
    probability_ticks: Sequence[float] = PROBABILITY_TICKS,
) -> ReportFigure:
    """The nomogram with its equation written under it, as a captioned `ReportFigure`. `outcome` labels the
    probability axis (say the class and direction, e.g. 'P(good_outcome = 1)'); `note` is added to the caption (how
    the predictors were chosen, where the Rad-score comes from)."""
    figure = nomogram_plot(nomogram, probability_ticks=probability_ticks, outcome=outcome,
                           equation=nomogram.equation())
    caption = (
        f"Nomogram of the logistic model fitted on the {n_training} training patients. Read it from the top: for "
        "each predictor, draw a vertical line from the patient's value up to the Points axis, add the points of all "
        f"predictors, then draw a vertical line from that sum on the Total points axis down to {outcome}. One point "
        f"is worth {1 / nomogram.points_per_logit():.3g} log-odds on every axis. The model's equation (the linear "
        f"predictor) is printed under the nomogram: {nomogram.equation()}." + (f" {note.strip()}" if note else "")
    )
    return ReportFigure(key, "Nomogram and its equation", caption, figure)


def nomogram_equation_table(nomogram: Nomogram, n_training: int, key: str = "nomogram_equation") -> ReportTable:
    """The nomogram's model as a table: one row per term (intercept first) with its coefficient, odds ratio and the
    points a one-unit increase (a level, for a categorical term) is worth."""
    terms = nomogram.terms()
    frame = pd.DataFrame(
        {
            "Term": ["(intercept)", *terms],
            "Coefficient (log-odds)": [nomogram.intercept, *terms.values()],
            "Odds ratio": [math.nan, *(math.exp(b) for b in terms.values())],
            "Points per unit": [math.nan, *(b * nomogram.points_per_logit() for b in terms.values())],
        }
    )
    caption = (
        f"The logistic model drawn as the nomogram, fitted on the {n_training} training patients: "
        f"{nomogram.equation()}. Odds ratios per unit of a continuous predictor, or of a level against the reference "
        "level; a negative number of points means the nomogram's axis runs right to left for that predictor."
    )
    return ReportTable(key, "Nomogram equation", caption, frame)


def nomogram_plot(nomogram: Nomogram, title: str = "", width_inches: float = 9.0,
                  probability_ticks: Sequence[float] = PROBABILITY_TICKS, outcome: str = "Risk",
                  equation: str | None = None) -> Figure:
    """`nomogram_figure`'s Figure; `equation` is written under the axes when given."""
    rows = len(nomogram.axes) + 3
    lines = len(textwrap.wrap(equation, width=int(width_inches * 15))) if equation else 0
    figure = new_figure((width_inches, 0.6 * rows + 0.6 + 0.2 * lines))
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set(xlim=(-0.3, 1.04), ylim=(-rows + 0.4, 0.8))
    if title:
        axes.set_title(title)
    _scale_row(axes, 0, "Points", [(p / 100, f"{p:g}") for p in range(0, 101, 10)])
    for row, axis in enumerate(nomogram.axes, start=1):
        _scale_row(axes, -row, axis.name, _variable_ticks(nomogram, axis), _axis_extent(nomogram, axis))
    total = nomogram.max_total_points()
    total_ticks = [t for t in MaxNLocator(nbins=10).tick_values(0, total) if 0 <= t <= total + 1e-9]
    _scale_row(axes, -(rows - 2), "Total points", [(t / total, f"{t:g}") for t in total_ticks])
    risk = [(nomogram.points_for_probability(p) / total, f"{p:g}") for p in probability_ticks]
    _scale_row(axes, -(rows - 1), outcome, [(x, label) for x, label in risk if 0 <= x <= 1])
    if equation:  # a figure-level x label: the constrained layout keeps room for it under the axes
        figure.supxlabel(textwrap.fill(equation, width=int(width_inches * 15)), fontsize="x-small")
    return figure


def _variable_ticks(nomogram: Nomogram, axis: NomogramAxis) -> list[tuple[float, str]]:
    if isinstance(axis, CategoricalAxis):
        return [(nomogram.variable_points(axis.name, level) / 100, str(level)) for level in axis.effects]
    values = [v for v in MaxNLocator(nbins=6).tick_values(axis.low, axis.high) if axis.low <= v <= axis.high]
    if len(values) < 2:
        values = [axis.low, axis.high]
    return [(nomogram.variable_points(axis.name, v) / 100, f"{v:g}") for v in values]


def _axis_extent(nomogram: Nomogram, axis: NomogramAxis) -> tuple[float, float]:
    """Where a variable's line runs (fractions of the points axis): its whole range, not only the ticks."""
    if isinstance(axis, CategoricalAxis):
        ends = [nomogram.variable_points(axis.name, level) / 100 for level in axis.effects]
    else:
        ends = [nomogram.variable_points(axis.name, v) / 100 for v in (axis.low, axis.high)]
    return min(ends), max(ends)


def _scale_row(axes: Axes, y: float, label: str, ticks: list[tuple[float, str]],
               extent: tuple[float, float] | None = None) -> None:
    """A horizontal scale at height `y`: the label on the left, a line over `extent` (default: the ticks),
    tick labels above; labels closer than 4 % of the width alternate above and below."""
    axes.text(LABEL_X, y, label, ha="right", va="center", fontsize="small")
    if not ticks:
        return
    ticks = sorted(ticks)
    positions = [x for x, _ in ticks]
    low, high = extent if extent is not None else (min(positions), max(positions))
    axes.plot([low, high], [y, y], color="black", linewidth=0.8)
    below = False
    for index, (x, text) in enumerate(ticks):
        below = (not below) if index and x - ticks[index - 1][0] < 0.04 else False
        axes.plot([x, x], [y, y + (-0.08 if below else 0.08)], color="black", linewidth=0.8)
        axes.text(x, y + (-0.12 if below else 0.12), text, ha="center", va="top" if below else "bottom",
                  fontsize="x-small")
