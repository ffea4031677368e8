import dagster as dg


class InboxResource(dg.ConfigurableResource):
    """How the prospective inbox (`inbox:` in cohort.yaml) is watched."""

    stable_seconds: float = 60.0  # a file unchanged this long (or a READY marker) counts as fully copied
