"""Study config files for tests that materialize assets directly: the `study` resource every asset reads."""

from pathlib import Path

import yaml

from cssci_platform.lib.cohort import load_cohort
from cssci_platform.resources.study import StudyResource


def write_study(folder: Path, manifest: Path, sections: dict | None = None, name: str = "test") -> Path:
    """A study config on `manifest` (its first outcome modelled unless `sections` names one); `sections` are merged
    into the document section by section (e.g. {"models": {"classifiers": ["LR"]}})."""
    document: dict = {"name": name, "cohort": {"manifest": str(manifest)}}
    if not (sections or {}).get("outcome"):
        outcomes = list(load_cohort(manifest).spec.outcomes)
        if not outcomes:
            raise ValueError(f"{manifest} declares no outcome: give sections={{'outcome': {{'name': ...}}}}")
        document["outcome"] = {"name": outcomes[0]}
    for section, values in (sections or {}).items():
        document[section] = {**document.get(section, {}), **values} if isinstance(values, dict) else values
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def study_resource(folder: Path, manifest: Path, sections: dict | None = None, overrides: list[str] | None = None,
                   name: str = "test") -> StudyResource:
    return StudyResource(path=str(write_study(folder, manifest, sections, name)), overrides=overrides or [])
