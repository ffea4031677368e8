"""`cssci status`: the cohort overview of one home (the same tables as `cohort_manifest`'s metadata)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from cssci_platform.cli.home import configure_environment
from cssci_platform.cli.output import console, rule
from cssci_platform.cli.study_commands import HOME_OPTION
from cssci_platform.lib import failures


def status(home: Path = HOME_OPTION) -> None:
    """The cohort at a glance: patients by center, cohort, QC status and stage reached; inbox arrivals waiting;
    outcomes known; each champion with its age and latest prospective validation."""
    from cssci_platform.lib.qc_montage import FOLDER as MONTAGE_FOLDER
    from cssci_platform.lib.queries.overview import cohort_overview
    from cssci_platform.lib.warehouse import connect

    configure_environment(home)
    warehouse = Path(os.environ["CSSCI_WAREHOUSE"])
    if not warehouse.is_file():
        raise failures.UserError(f"no warehouse at {warehouse}: this home has no cohort yet; run `cssci ingest "
                                 f"<cohort.yaml> --home {home}` or `cssci demo --home {home}` first")
    with connect(warehouse, read_only=True) as con:
        overview = cohort_overview(con)
    for section in overview.sections:
        rule(section.title)
        if not section.rows:
            console.print(escape(section.empty))
            continue
        table = Table(*section.headers)
        for row in section.rows:
            table.add_row(*(escape(str(value)) for value in row))
        console.print(table)
    console.print(f"warehouse: {escape(str(warehouse))}")
    montages = Path(os.environ["CSSCI_IMAGE_STORE"]) / MONTAGE_FOLDER
    count = len(list(montages.glob("*.png"))) if montages.is_dir() else 0
    console.print(f"QC montages (one PNG per patient): {count} in {escape(str(montages))}; also on each roi_slices "
                  "materialization in the Dagster UI (metadata qc_montage)")
