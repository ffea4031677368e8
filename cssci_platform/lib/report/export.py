"""Writing a study report to disk: the HTML page, every figure as PNG and SVG (`figures/`), every table as CSV
(`tables/`), and the whole page as PDF printed by a headless Chromium (the page's print stylesheet lays it out).

Layout under the reports folder::

    <reports>/<study>.html              the self-contained page (figures embedded)
    <reports>/<study>/figures/<key>.png|svg
    <reports>/<study>/tables/<key>.csv
    <reports>/<study>/<study>.pdf       when a browser was found

No browser: the HTML, figures and tables are still written and `ExportedReport.pdf_note` says how to get the PDF.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cssci_platform.lib.report.artifacts import write_figure_files, write_table_file
from cssci_platform.lib.report.document import StudyReport

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_ENV = "CSSCI_BROWSER"  # a browser binary to use instead of the ones searched on PATH
PDF_TIMEOUT_S = 180
NO_BROWSER = (
    "no PDF: no headless browser found (looked for {names} on PATH and ${env}); install one "
    "(Debian/Ubuntu: apt-get install chromium) or set {env}=/path/to/chrome, then run `cssci report` again"
)


@dataclass
class ExportedReport:
    """What `export_report` wrote."""

    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    pdf: Path | None = None
    pdf_note: str = ""  # why there is no PDF (one line), empty when there is one

    @property
    def files(self) -> list[Path]:
        return [self.html, *self.figures, *self.tables, *([self.pdf] if self.pdf else [])]


def find_browser(names: Sequence[str] = BROWSERS) -> str | None:
    """The headless browser to print with: `$CSSCI_BROWSER` when set, else the first of `names` on PATH."""
    configured = os.environ.get(BROWSER_ENV)
    if configured:
        return configured if shutil.which(configured) else None
    return next((path for name in names if (path := shutil.which(name))), None)


def export_report(report: StudyReport, folder: Path, name: str, browser: str | None = None,
                  pdf: bool = True) -> ExportedReport:
    """Write `report` into `folder` (see the module docstring); figures are closed after writing. `browser`: the
    binary to print the PDF with (default: `find_browser()`); `pdf=False` skips the PDF."""
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / f"{name}.html"
    html_path.write_text(report.html, encoding="utf-8")
    own = folder / name
    figures_dir, tables_dir = own / "figures", own / "tables"
    for stale in (figures_dir, tables_dir):
        if stale.exists():
            shutil.rmtree(stale)
    exported = ExportedReport(html_path)
    for figure in report.figures:
        exported.figures += write_figure_files(figure, figures_dir, png=report.pngs.get(figure.key))
    for table in report.tables:
        exported.tables.append(write_table_file(table, tables_dir))
    if not pdf:
        return exported
    browser = browser or find_browser()
    if browser is None:
        exported.pdf_note = NO_BROWSER.format(names=", ".join(BROWSERS), env=BROWSER_ENV)
        return exported
    try:
        exported.pdf = print_pdf(html_path, own / f"{name}.pdf", browser)
    except PdfError as error:
        exported.pdf_note = str(error)
    return exported


class PdfError(RuntimeError):
    """The browser did not print the page (the message says what it reported)."""


def print_pdf(html_path: Path, pdf_path: Path, browser: str, timeout_s: int = PDF_TIMEOUT_S) -> Path:
    """Print `html_path` to `pdf_path` with a headless Chromium/Chrome (the page's print stylesheet applies)."""
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    pdf_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="cssci-chromium-") as profile:
        printed = Path(profile) / html_path.name  # the appendix printed open: a closed <details> prints as one line
        printed.write_text(expand_details(html_path.read_text(encoding="utf-8")), encoding="utf-8")
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path}",
            printed.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"no PDF: {browser} did not finish printing {html_path.name} in {timeout_s} s") from None
        except OSError as error:
            raise PdfError(f"no PDF: could not start {browser} ({error.strerror})") from None
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        raise PdfError(f"no PDF: {browser} exited with {done.returncode} without writing it ({last})")
    return pdf_path


def expand_details(page: str) -> str:
    """Every collapsible ``<details>`` block opened (the printed page has no clicks)."""
    return re.sub(r"<details(?![^>]*\bopen\b)", "<details open", page)


PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_page_count(pdf_path: Path) -> int:
    """The number of page objects in a PDF (Chromium writes them uncompressed)."""
    return len(PAGE_OBJECT.findall(pdf_path.read_bytes()))
