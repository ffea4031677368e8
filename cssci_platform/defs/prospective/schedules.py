import os

import dagster as dg

from cssci_platform.defs.prospective.jobs import validation_job


@dg.definitions
def validation_schedule() -> dg.Definitions:
    cron = os.environ.get("CSSCI_VALIDATION_CRON", "0 6 * * 1")  # read when definitions load, not at import
    return dg.Definitions(schedules=[dg.ScheduleDefinition(
        name="validation_metrics_schedule", job=validation_job, cron_schedule=cron,
        description="Recompute the champions' metrics on prospective patients with known outcomes (weekly by default; "
                    "CSSCI_VALIDATION_CRON to change)")])
