"""The page frame every study report shares (a jinja2 fragment: `title`): self-contained HTML, no external URL,
with a print stylesheet (A4, figures and tables kept whole) for the PDF export."""

PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cssci study report - {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.35; }
table { border-collapse: collapse; margin: 0.4em 0 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; } h2 { border-bottom: 2px solid #446; }
figure { margin: 1em 0 1.5em 0; } figcaption, .table-caption { font-size: 0.9em; color: #333; max-width: 60em; }
.table-caption { margin: 1.2em 0 0.2em 0; } .note { font-size: 0.8em; color: #444; margin: 0.1em 0; }
.warning { border: 2px solid #b03a2e; background: #fdedec; padding: 0.6em 1em; }
table.checklist td, table.checklist th { text-align: left; } table.performance td { white-space: nowrap; }
table.checklist tr.authors td:last-child { color: #888; }
table.table-one td, table.calibration td { white-space: nowrap; }
table.table-one { font-size: 0.75em; } table.table-one th { min-width: 5em; }  /* three cohorts fit the page */
table.calibration td:first-child, table.table-one td:first-child { white-space: pre; }
figure.montage { display: inline-block; vertical-align: top; margin: 0.5em 1em 0.5em 0; }
details summary { cursor: pointer; font-weight: 600; margin: 0.5em 0; }
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; } h3 { break-after: avoid; }
  figure, .report-table, tr, .warning { break-inside: avoid; }
  table { font-size: 8pt; } img { max-height: 24cm; object-fit: contain; }
  figure.montage { max-width: 100%; }
}
</style></head><body>
<h1>Study report: {{ title }}</h1>
"""
