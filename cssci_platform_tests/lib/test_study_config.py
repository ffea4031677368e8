"""Experiment configs: shipped protocols validate, bad configs fail with key paths, the study resource reads them."""

import pytest
import yaml

from cssci_platform.lib.study_config import (
    ConfigError,
    cohort_problems,
    cohort_spec,
    config_notes,
    dump_config,
    load_config,
    parse_config,
    shipped_configs,
)
from cssci_platform.resources.study import StudyResource

SHIPPED = ["cervical_sci_ianr", "cervical_sci_upper_limb", "demo", "spinal_metastasis_primary_site"]
MINIMAL = {"name": "x", "cohort": {"synthetic": {"protocol": "demo"}}, "outcome": {"name": "good_outcome"}}


def test_the_four_protocols_ship():
    assert sorted(shipped_configs()) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_validates_against_its_cohort_and_round_trips(name):
    config = load_config(name)
    assert config.name == name
    assert cohort_problems(config, cohort_spec(config)) == []
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_protocol_specifics_reach_the_assets(tmp_path):
    """What every asset reads (`study.config()` of the study resource) holds each protocol's own settings."""

    def study(name: str):
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_config(load_config(name)), encoding="utf-8")  # what `cssci run` leaves in the home
        return StudyResource(path=str(path)).config()

    ianr = study("cervical_sci_ianr")
    assert (ianr.outcome.source, ianr.outcome.rule, ianr.outcome.threshold) == ("ianr_6m", "at_least", 37.0)
    assert ianr.selection.icc_threshold == 0.75 and ianr.models.cv_folds == 10 and len(ianr.models.classifiers) == 11
    assert ianr.deep.slice.rect_roi == "dl_rect" and ianr.deep.backbones == ["resnet152"]
    assert ianr.split.preset == "holdout_8_2"
    upper = study("cervical_sci_upper_limb")
    assert upper.outcome.rule == "change_above_mean"
    assert upper.deep.backbones == ["resnet18", "resnet34", "resnet152"] and upper.split.preset == "holdout_7_3"
    metastasis = study("spinal_metastasis_primary_site")
    assert metastasis.deep.fine_tuning.backbones == ["resnet50"] and metastasis.models.signatures == ["Clinical"]


def _problems(document: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    return error.value.problems


def test_unknown_key_names_its_path_and_the_allowed_keys():
    [problem] = _problems({**MINIMAL, "deep": {"slice": {"colour": "red"}}})
    assert problem.startswith("deep.slice.colour: unknown key 'colour'; allowed here: sequence, roi, axis")


def test_bad_choice_lists_the_allowed_values():
    [problem] = _problems({**MINIMAL, "models": {"classifiers": ["LR", "SVN"]}})
    assert problem.startswith("models.classifiers[1]: 'SVN' is not allowed; choose one of 'LR', 'NaiveBayes', 'SVM'")
    [problem] = _problems({**MINIMAL, "deep": {"backbones": ["resnet19"]}})
    assert "deep.backbones[0]: 'resnet19' is not allowed" in problem and "'resnet152'" in problem
    [problem] = _problems({**MINIMAL, "harmonization": {"unseen_center_policy": "guess"}})
    assert "'none', 'refit_site', 'reference' or 'error'" in problem


def test_missing_and_inconsistent_values_are_explained():
    assert _problems({"name": "x", "outcome": {"name": "y"}}) == ["cohort: required key is missing"]
    [problem] = _problems({**MINIMAL, "outcome": {"name": "y", "source": "ianr_6m", "rule": "at_least"}})
    assert problem.startswith("outcome: rule 'at_least' needs 'threshold'")
    [problem] = _problems({**MINIMAL, "cohort": {"manifest": "a.yaml", "synthetic": {"protocol": "demo"}}})
    assert "give exactly one of 'manifest'" in problem
    [problem] = _problems({**MINIMAL, "models": {"signatures": ["Radiomics"]}})
    assert "models.signatures: unknown signature 'Radiomics'" in problem
    [problem] = _problems({**MINIMAL, "models": {"signatures": ["DL_resnet50"]}})
    assert "'DL_resnet50' needs backbone 'resnet50' in deep.backbones" in problem
    [problem] = _problems({**MINIMAL, "preprocessing": {"channels": ["original"]}, "deep": {"channels": ["mean"]}})
    assert "deep channels ['mean'] are not computed" in problem
    [problem] = _problems({**MINIMAL, "models": {"cv_folds": 1}})
    assert problem.startswith("models.cv_folds: Input should be greater than or equal to 2")


def test_several_problems_are_reported_together():
    problems = _problems({**MINIMAL, "split": {"preset": "holdout_9_1"}, "modes": ["careful"], "extra": 1})
    assert [p.split(":")[0] for p in problems] == ["split.preset", "modes[0]", "extra"]


def test_config_is_checked_against_the_cohort():
    config = load_config(
        "cervical_sci_ianr",
        ["imaging.sequences=[sag_T2, ax_T3]", "models.clinical_predictors=[age, bmi]", "outcome.source=ianr_12m"],
    )
    problems = cohort_problems(config, cohort_spec(config))
    assert any(p.startswith("outcome.source: 'ianr_12m' is not an outcome of the manifest") for p in problems)
    assert any(p.startswith("imaging.sequences: ['ax_T3'] not declared") for p in problems)
    assert any(p.startswith("models.clinical_predictors: ['bmi'] not declared") for p in problems)
    as_is_on_a_score = load_config(
        "cervical_sci_ianr", ["outcome.rule=as_is", "outcome.threshold=null", "outcome.name=ianr_6m"]
    )
    assert any(
        "rule 'as_is' needs a binary or multiclass" in p
        for p in cohort_problems(as_is_on_a_score, cohort_spec(as_is_on_a_score))
    )


def test_overrides_and_file_errors(tmp_path):
    assert load_config("demo", ["models.cv_folds=3", "deep.backbones=[resnet34]"]).models.cv_folds == 3
    with pytest.raises(ConfigError, match="write it as dotted.key=value"):
        load_config("demo", ["models.cv_folds"])
    with pytest.raises(ConfigError, match="not a shipped config"):
        load_config("no_such_protocol")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_manifest_resolves_against_the_config_file(tmp_path):
    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "mine.yaml"
    path.write_text(
        yaml.safe_dump({"name": "mine", "cohort": {"manifest": "../data/cohort.yaml"}, "outcome": {"name": "y"}}),
        encoding="utf-8",
    )
    assert str(load_config(path).cohort.manifest) == str((tmp_path / "data" / "cohort.yaml").resolve())


@pytest.mark.parametrize("name", SHIPPED)
def test_the_definitions_study_resource_reads_each_protocol_from_the_environment(name, tmp_path, monkeypatch):
    """What `cssci run`, `cssci ui --config` and `dagster dev` do: CSSCI_EXPERIMENT_CONFIG names the study file, read
    when a run starts (not when the definitions are imported)."""
    import dagster as dg

    from cssci_platform.definitions import defs

    definitions = defs()
    path = tmp_path / "experiment.yaml"
    path.write_text(dump_config(load_config(name)), encoding="utf-8")
    monkeypatch.setenv("CSSCI_EXPERIMENT_CONFIG", str(path))
    with dg.build_resources({"study": definitions.resources["study"]}) as resources:
        assert resources.study.config() == load_config(name)


def test_notes_flag_a_paper_faithful_mode_with_nothing_to_leak():
    [note] = config_notes(load_config("cervical_sci_ianr"))  # ICC -> z-score -> LASSO: no whole-cohort filter
    assert note.startswith("modes: paper_faithful") and "same models" in note
    assert config_notes(load_config("cervical_sci_upper_limb")) == []
    assert config_notes(load_config("cervical_sci_ianr", ["modes=[leakage_safe]"])) == []
    assert config_notes(load_config("demo", ["selection.rank_test=false", "selection.spearman_threshold=null"]))
