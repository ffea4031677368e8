"""Export of the study report (issue 16): every figure as PNG and SVG, every table as CSV next to the HTML page, the
page as a PDF with pages (headless Chromium), a clear line instead of a PDF when no browser is found, and the QC
montage gallery of the appendix."""

from __future__ import annotations

import base64
import re
from collections import Counter
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.report.artifacts import PngFigure, ReportFigure
from cssci_platform.lib.report.export import BROWSER_ENV, expand_details, export_report, find_browser, pdf_page_count
from cssci_platform.lib.report.inputs import ReportInputs
from cssci_platform.lib.report.study import build_report, build_study_report
from cssci_platform_tests.lib.test_report_publication import study


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return study()


def test_every_figure_is_written_as_png_and_svg_and_every_table_as_csv(inputs: ReportInputs, tmp_path: Path) -> None:
    report = build_study_report(inputs)
    exported = export_report(report, tmp_path, "toy", pdf=False)
    assert exported.html == tmp_path / "toy.html" and exported.html.read_text(encoding="utf-8") == report.html
    figures = tmp_path / "toy" / "figures"
    for figure in report.figures:
        png = figures / f"{figure.key}.png"
        assert png.exists() and matplotlib.image.imread(png).shape[0] > 100
        if isinstance(figure, ReportFigure):
            svg = (figures / f"{figure.key}.svg").read_text(encoding="utf-8")
            assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert len([f for f in exported.figures if f.suffix == ".svg"]) == sum(
        isinstance(f, ReportFigure) for f in report.figures
    )
    assert sorted(p.stem for p in (tmp_path / "toy" / "tables").glob("*.csv")) == sorted(t.key for t in report.tables)
    for table in report.tables:
        written = pd.read_csv(tmp_path / "toy" / "tables" / f"{table.key}.csv", keep_default_na=False)
        assert list(written.columns) == [str(c) for c in table.frame.columns] and len(written) == len(table.frame)


def test_the_auc_of_the_csv_is_the_number_the_page_prints(inputs: ReportInputs, tmp_path: Path) -> None:
    report = build_study_report(inputs)
    export_report(report, tmp_path, "toy", pdf=False)
    rows = pd.read_csv(tmp_path / "toy" / "tables" / "performance_test.csv")
    first = rows.iloc[0]
    test = report.html.split("<h3>Test</h3>")[1].split("</table>")[0]
    assert f"{first['AUC']:.3f} ({first['CI low']:.3f}-{first['CI high']:.3f})" in test


def test_the_pdf_has_pages(inputs: ReportInputs, tmp_path: Path) -> None:
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless Chromium on this machine (.ci/run installs it)")
    exported = export_report(build_study_report(inputs), tmp_path, "toy", browser=browser)
    assert exported.pdf == tmp_path / "toy" / "toy.pdf" and not exported.pdf_note
    assert exported.pdf.read_bytes().startswith(b"%PDF") and pdf_page_count(exported.pdf) >= 5


def test_without_a_browser_the_rest_is_written_and_one_line_says_how_to_get_the_pdf(
    inputs: ReportInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "no-such-browser"))
    assert find_browser() is None
    exported = export_report(build_study_report(inputs), tmp_path, "toy")
    assert exported.pdf is None and exported.html.exists() and exported.figures and exported.tables
    assert "\n" not in exported.pdf_note and "apt-get install chromium" in exported.pdf_note
    assert BROWSER_ENV in exported.pdf_note


def test_a_printed_page_opens_every_collapsible_block() -> None:
    page = '<details><summary>a</summary>x</details><details open><summary>b</summary></details>'
    assert expand_details(page).count("<details open") == 2


def test_stale_exports_are_replaced(inputs: ReportInputs, tmp_path: Path) -> None:
    stale = tmp_path / "toy" / "figures" / "old_figure.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    export_report(build_study_report(inputs), tmp_path, "toy", pdf=False)
    assert not stale.exists()


def test_png_only_figures_are_exported_as_png(tmp_path: Path) -> None:
    from cssci_platform.lib.report.artifacts import write_figure_files
    from cssci_platform.lib.report.figures import figure_png, new_figure

    figure = new_figure((2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    written = write_figure_files(PngFigure("shap_summary_x", "t", "c", figure_png(figure)), tmp_path)
    assert [p.name for p in written] == ["shap_summary_x.png"]


def test_the_appendix_shows_each_patients_qc_montage_with_patient_and_center(inputs: ReportInputs,
                                                                          tmp_path: Path) -> None:
    montages = []
    for key in ("P000", "P001"):
        path = tmp_path / f"{key}.png"
        matplotlib.image.imsave(path, np.random.default_rng(0).random((30, 60, 3)))
        montages.append(path)
    page = build_report(ReportInputs(**{**inputs.__dict__, "qc_montages": montages}))
    appendix = page.split('id="appendix"')[1]
    captions = re.findall(r"<figcaption>(P\d+ \(center_[AB]\))</figcaption>", appendix)
    assert captions == ["P000 (center_A)", "P001 (center_B)"]
    assert appendix.count('alt="QC montage of P00') == 2 and "QC montages of 2 patients" in appendix


def _champion(n: int = 48, seed: int = 3) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    """A fitted logistic champion with long radiomics names (as the demo's), its test rows and training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    names = [f"rad__sag_T2__lesion__gaussian_original_glcm_feature_{j}" for j in range(4)]
    rows = pd.DataFrame(rng.normal(size=(n, len(names))), columns=names, index=[f"P{i:03d}" for i in range(n)])
    label = np.where(rows[names[0]] + rng.normal(0, 0.5, n) > 0, "1", "0")
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(rows.iloc[:40], label[:40])
    return pipeline, rows.iloc[40:], rows.iloc[:40]


def test_the_shap_figures_of_a_champion_are_exported_as_png_and_svg(inputs: ReportInputs, tmp_path: Path) -> None:
    """Issue 16: every figure as PNG and SVG; the SHAP summary and waterfall came as PNG bytes (PNG only)."""
    from dataclasses import replace

    pipeline, test_rows, training_rows = _champion()
    report = build_study_report(replace(inputs, explained=[("Rad_LR", pipeline, test_rows)], background=training_rows))
    exported = export_report(report, tmp_path, "toy", pdf=False)
    names = {path.name for path in exported.figures}
    for key in ("shap_summary_rad_lr", "shap_waterfall_rad_lr"):
        assert {f"{key}.png", f"{key}.svg"} <= names, key
        svg = (tmp_path / "toy" / "figures" / f"{key}.svg").read_text(encoding="utf-8")
        assert "<svg" in svg
    assert all(isinstance(figure, ReportFigure) for figure in report.figures)


def test_the_multiclass_shap_figures_are_exported_as_png_and_svg(tmp_path: Path) -> None:
    from cssci_platform_tests.lib import test_report_multiclass as multiclass

    keys, labels, roles = multiclass.cohort()
    data = {"keys": keys, "labels": labels, "roles": roles,
            "predictions": multiclass.prediction_frame(keys, labels, roles),
            "outcomes": pd.DataFrame({"patient_key": keys, "label": labels})}
    forest, _, rows = multiclass.fitted_pipelines(data)
    report = build_study_report(multiclass.report_inputs(data, explained=[("Rad_RandomForest", forest, rows)]))
    exported = export_report(report, tmp_path, "multi", pdf=False)
    names = {path.name for path in exported.figures}
    for key in ("shap_summary_rad_randomforest", "shap_waterfall_rad_randomforest"):
        assert {f"{key}.png", f"{key}.svg"} <= names, key
    pngs = {name.removesuffix(".png") for name in names if name.endswith(".png")}
    assert {"confusion_test", "roc_ovr_test"} <= pngs
    assert {name.removesuffix(".svg") for name in names if name.endswith(".svg")} == pngs  # every figure as SVG too


def test_each_figure_is_rendered_to_png_once_and_the_file_holds_the_pages_bytes(
    inputs: ReportInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page embeds each figure's PNG and the export writes it to a file: one rendering serves both (the export
    rendered every figure a second time, ~a third of a report's figure time)."""
    from matplotlib.figure import Figure

    renders: Counter[int] = Counter()
    savefig = Figure.savefig

    def counted(self: Figure, *args, **kwargs):  # matplotlib's own savefig, counted
        if kwargs.get("format") == "png":
            renders[id(self)] += 1
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counted)
    report = build_study_report(inputs)
    export_report(report, tmp_path, "toy", pdf=False)
    drawn = [f for f in report.figures if isinstance(f, ReportFigure)]
    assert drawn and all(renders[id(f.figure)] == 1 for f in drawn), sorted(renders.values())
    page = report.html
    for figure in report.figures:
        png = (tmp_path / "toy" / "figures" / f"{figure.key}.png").read_bytes()
        assert base64.b64encode(png).decode() in page, figure.key
