"""Materialize modeling assets with given study settings: the `study` resource of a `modeling_platform`, replaced
by one whose config file holds `sections` (the YAML sections of a study config, e.g. {"selection": {"mrmr_k": 5}})."""

from pathlib import Path

import dagster as dg

from cssci_platform_tests.study_files import study_resource


def materialize_with_study(
    assets: list,
    platform: dict,
    selection: list,
    sections: dict | None = None,
    name: str = "test",
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """`name`: the study (MLflow experiment) name; `tags`: run tags (e.g. the study run `cssci.study_run`)."""
    manifest = Path(platform["resources"]["cohort"].manifest_path)
    study = study_resource(Path(platform["warehouse"]).parent / "study", manifest, sections, name=name)
    return dg.materialize(
        assets,
        selection=selection,
        instance=platform["instance"],
        resources={**platform["resources"], "study": study},
        tags=tags,
        raise_on_error=False,
    )
