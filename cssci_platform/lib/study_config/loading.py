"""Read, override, check and print experiment configs; the shipped protocol configs."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.study_config.model import StudyConfig

SHIPPED_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "experiments"
EXPERIMENT_ENV = "CSSCI_EXPERIMENT_CONFIG"  # the active experiment: its settings are the Dagster jobs' defaults


def experiment_file(home: Path) -> Path:
    """Where `cssci run` leaves the resolved config of the experiment a home belongs to."""
    return home / "experiment.yaml"


class ConfigError(ValueError):
    """An experiment config is invalid; `problems` lists each as '<key path>: <what is wrong and what is allowed>'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"experiment config {source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


def shipped_configs() -> dict[str, Path]:
    """Protocol name -> YAML file shipped with the platform."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.yaml"))}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a shipped config (`cervical_sci_ianr`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path.resolve()
    shipped = shipped_configs()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ConfigError(str(name_or_path), [f"no such file, and not a shipped config (shipped: {', '.join(shipped)})"])


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    """Parse and validate; `overrides` are 'dotted.key=value' strings (value parsed as YAML). A relative
    `cohort.manifest` is resolved against the config file's folder."""
    path = resolve_config_path(name_or_path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from None
    if not isinstance(document, dict):
        raise ConfigError(str(path), ["the file must hold a mapping of sections (name, cohort, outcome, ...)"])
    for override in overrides or []:
        apply_override(document, override, str(path))
    manifest = (document.get("cohort") or {}).get("manifest") if isinstance(document.get("cohort"), dict) else None
    if isinstance(manifest, str) and not Path(manifest).is_absolute():
        document["cohort"]["manifest"] = str((path.parent / manifest).resolve())
    return parse_config(document, str(path))


def parse_config(document: dict, source: str = "<config>") -> StudyConfig:
    try:
        return StudyConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(source, [_describe(e) for e in error.errors()]) from None


def apply_override(document: dict, override: str, source: str = "<config>") -> None:
    """'models.cv_folds=5' or 'deep.backbones=[resnet18]' -> nested assignment (creating sections)."""
    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise ConfigError(source, [f"override '{override}': write it as dotted.key=value, e.g. models.cv_folds=5"])
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [f"override '{override}': the value is not valid YAML ({error})"]) from None
    *parents, leaf = key.strip().split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(source, [f"override '{override}': '{part}' is not a section"])
    node[leaf] = value


def dump_config(config: StudyConfig) -> str:
    """The resolved config (defaults filled in) as YAML, in section order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, width=120)


def cohort_spec(config: StudyConfig) -> CohortSpec:
    """The manifest spec the config runs on: the manifest file's, or the synthetic protocol's (nothing written)."""
    if config.cohort.manifest is not None:
        from cssci_platform.lib.cohort import load_cohort

        return load_cohort(Path(config.cohort.manifest)).spec
    from cssci_platform.lib.synthetic import metastasis_manifest, sci_manifest

    protocol = config.cohort.synthetic.protocol  # type: ignore[union-attr]
    return CohortSpec.model_validate(metastasis_manifest() if protocol == "metastasis" else sci_manifest(protocol))


def cohort_problems(config: StudyConfig, spec: CohortSpec) -> list[str]:
    """What the config asks for that the cohort's manifest does not declare (checked before any work starts)."""
    problems: list[str] = []
    outcome = config.outcome
    source = outcome.source_outcome
    source_type = spec.outcomes[source].type if source in spec.outcomes else None
    if source_type is None:
        problems.append(f"outcome.source: '{source}' is not an outcome of the manifest (outcomes: "
                        f"{list(spec.outcomes)})")
    elif outcome.rule == "as_is" and source_type not in ("binary", "multiclass"):
        problems.append(f"outcome.rule: '{source}' is {source_type}; rule 'as_is' needs a binary or multiclass "
                        "outcome (use rule at_least or change_above_mean for scores)")
    elif outcome.rule != "as_is" and source_type != "continuous":
        problems.append(f"outcome.rule: '{outcome.rule}' needs a continuous outcome; '{source}' is {source_type}")
    if outcome.name in spec.outcomes and outcome.name != source:
        problems.append(f"outcome.name: '{outcome.name}' is already a manifest outcome; name the derived label "
                        "differently")
    baseline = spec.clinical.get(outcome.baseline) if outcome.baseline is not None else None
    if outcome.baseline is not None and (baseline is None or baseline.type != "continuous"):
        problems.append(f"outcome.baseline: '{outcome.baseline}' is not a continuous clinical variable "
                        f"(continuous: {[n for n, v in spec.clinical.items() if v.type == 'continuous']})")
    problems += _unknown("imaging.sequences", config.imaging.sequences or [], spec.sequences)
    problems += _unknown("imaging.radiomics_rois", config.imaging.radiomics_rois, spec.rois)
    problems += _unknown("deep.slice.sequence", [s for s in [config.deep.slice.sequence] if s], spec.sequences)
    rois = [config.deep.slice.roi, config.deep.slice.rect_roi, config.deep.slice.canal_roi]
    problems += _unknown("deep.slice", [r for r in rois if r], spec.rois)
    problems += _unknown("models.clinical_predictors", config.models.clinical_predictors or [], list(spec.clinical))
    return problems


def resource_problems(config: StudyConfig) -> list[str]:
    """Files the config names that do not exist (the manifest, the network weights): found before any work, not at
    the step that needs them minutes later."""
    problems: list[str] = []
    manifest = config.cohort.manifest
    if manifest is not None and not Path(manifest).is_file():
        problems.append(f"cohort.manifest: {manifest} does not exist (a relative path is read from the config file's "
                        "folder); give the path of your cohort.yaml")
    return problems + _weights_problems(config)


def _weights_problems(config: StudyConfig) -> list[str]:
    deep = config.deep
    backbones = sorted({*deep.backbones, *(deep.fine_tuning.backbones if deep.fine_tuning else [])})
    weights = deep.weights.strip()
    if not backbones or weights.lower() == "none":
        return []
    from cssci_platform.lib.deep.backbones import imagenet_checkpoint_path
    from cssci_platform.lib.deep.settings import IMAGENET_ALIASES

    if weights.lower() not in IMAGENET_ALIASES:
        return [] if Path(weights).is_file() else [
            f"deep.weights: the checkpoint file {weights} does not exist; give the path of a state-dict file, "
            "'imagenet' (torchvision checkpoints in $TORCH_HOME/hub/checkpoints) or 'none' (random initialisation)"]
    missing = [imagenet_checkpoint_path(b, IMAGENET_ALIASES[weights.lower()]) for b in backbones]
    missing = [path for path in missing if not path.is_file()]
    needed = ", ".join(str(p) for p in missing)
    return [f"deep.weights: '{weights}' needs {needed} (weights are never downloaded); copy "
            f"the torchvision checkpoint file(s) to {missing[0].parent}/, or set deep.weights to a checkpoint file or "
            "'none' (e.g. --set deep.weights=none)"] if missing else []


def config_notes(config: StudyConfig) -> list[str]:
    """Valid but worth knowing before a long run: settings that make part of the work give no new information."""
    notes: list[str] = []
    selection = config.selection
    if "paper_faithful" in config.modes and not selection.rank_test and selection.spearman_threshold is None:
        notes.append("modes: paper_faithful differs from leakage_safe by the rank test and Spearman filter it runs on "
                     "the whole development cohort, and by a Youden threshold re-picked on each cohort; this selection "
                     "chain has neither filter, so both modes fit the same models (same AUCs) and only threshold "
                     "metrics differ")
    return notes


def _unknown(key: str, asked: list[str], declared: list[str]) -> list[str]:
    missing = [a for a in asked if a not in declared]
    return [f"{key}: {missing} not declared in the manifest (declared: {declared})"] if missing else []


def _describe(error: ErrorDetails) -> str:
    location = _path(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        listed = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{location}: unknown key '{error['loc'][-1]}'{listed}"
    if error["type"] == "literal_error":
        return f"{location}: {error['input']!r} is not allowed; choose one of {error['ctx']['expected']}"
    if error["type"] == "missing":
        return f"{location}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = "" if error["type"].startswith("value_error") else f" (got {error['input']!r})"
    return f"{location or '(top level)'}: {message}{got}"


def _path(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")):
            continue
        else:
            text += ("." if text else "") + str(part)
    return text


def _allowed_keys(loc: tuple) -> list[str]:
    """The field names of the section at `loc` (walking nested models, lists and optionals)."""
    model: Any = StudyConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _section_type(field.annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _section_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
        for argument in typing.get_args(annotation):
            found = _section_type(argument)
            if found is not None:
                return found
    return None
