"""One route for the study into Dagster (issue 14): the `study` resource reads CSSCI_EXPERIMENT_CONFIG when a run
starts; one run's settings change through the resource's `overrides` (the launchpad, `cssci report --experiment`);
`cssci run --set` reaches the assets through the home's resolved experiment.yaml; the CLI's modelling runs carry
the MLflow study run as a tag; a home on a bare manifest gets a default study."""


import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cssci_platform.cli.dagster_runs import run_job, run_tags, study_overrides
from cssci_platform.cli.home import activate_study, configure_environment, default_study, home_experiment_name
from cssci_platform.cli.study_stages import activate
from cssci_platform.definitions import defs
from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file, load_config
from cssci_platform.lib.study_runs import STUDY_TAG
from cssci_platform.resources.study import StudyResource

SEEN: list[dict] = []


@dg.asset
def study_probe(context: dg.AssetExecutionContext, study: StudyResource) -> None:
    """Records what an asset sees: the study's settings and the run's study tag."""
    config = study.config()
    SEEN.append({"name": config.name, "cv_folds": config.models.cv_folds, "tag": context.run.tags.get(STUDY_TAG)})


def probe_job() -> dg.JobDefinition:
    """A job on the real definitions' `study` resource (path from CSSCI_EXPERIMENT_CONFIG, as in the UI)."""
    definitions = dg.Definitions(assets=[study_probe], jobs=[dg.define_asset_job("probe_job", [study_probe])],
                                 resources={"study": defs().resources["study"]})
    return definitions.resolve_job_def("probe_job")


@pytest.fixture
def study_file(tmp_path: Path, restored_environment) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text("name: probe\ncohort: {synthetic: {protocol: demo}}\noutcome: {name: good_outcome}\n"
                    "models: {cv_folds: 7}\n", encoding="utf-8")
    os.environ[EXPERIMENT_ENV] = str(path)
    SEEN.clear()
    return path


def test_the_launchpad_changes_a_setting_for_one_run_through_the_study_resource(study_file: Path) -> None:
    job = probe_job()
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    overridden = job.execute_in_process(run_config={"resources": {"study": {"config": {
        "path": {"env": EXPERIMENT_ENV}, "overrides": ["models.cv_folds=3"]}}}},
                                        instance=dg.DagsterInstance.ephemeral())
    assert overridden.success
    assert [seen["cv_folds"] for seen in SEEN] == [7, 3]
    assert load_config(study_file).models.cv_folds == 7  # the file itself is unchanged


def test_the_cli_changes_a_setting_for_one_run_the_same_way(study_file: Path) -> None:
    run_config = study_overrides(["name=other_experiment"])  # `cssci report --experiment other_experiment`
    assert probe_job().execute_in_process(run_config=run_config, instance=dg.DagsterInstance.ephemeral()).success
    assert SEEN[-1]["name"] == "other_experiment" and study_overrides([]) == {}


def test_the_study_run_reaches_the_assets_as_a_run_tag(study_file: Path) -> None:
    assert probe_job().execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags=run_tags("abc123")).success
    assert SEEN[-1]["tag"] == "abc123"
    assert STUDY_TAG not in run_tags(None)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cssci_platform.lib.synthetic import write_sci_cohort

    return write_sci_cohort(tmp_path_factory.mktemp("cohort"), n_development=1, n_prospective=0, seed=3)


def test_a_set_value_of_cssci_run_reaches_the_assets_through_the_homes_study(manifest: Path, tmp_path: Path,
                                                                              restored_environment) -> None:
    SEEN.clear()
    config = load_config("demo", ["models.cv_folds=3", "deep.weights=none"])  # `cssci run --config demo --set ...`
    path = activate(config, tmp_path / "home", manifest)
    assert os.environ[EXPERIMENT_ENV] == str(path) == str(experiment_file((tmp_path / "home").resolve()))
    assert probe_job().execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    assert SEEN[-1] == {"name": "demo", "cv_folds": 3, "tag": None}


def test_the_cli_runs_a_job_with_the_study_tag_on_the_homes_instance(manifest: Path, tmp_path: Path,
                                                                     restored_environment) -> None:
    configure_environment(tmp_path / "home", manifest)
    activate_study(tmp_path / "home", manifest)
    result = run_job("cohort_manifest_job", study_run="run-42")
    assert result.success
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(result.run_id).tags[STUDY_TAG] == "run-42"


def test_a_bare_manifest_gets_a_default_study_named_after_its_cohort(manifest: Path, tmp_path: Path,
                                                                     restored_environment) -> None:
    home = tmp_path / "home"
    path = activate_study(home, manifest)
    assert path == experiment_file(home.resolve()) and os.environ[EXPERIMENT_ENV] == str(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert document == default_study(manifest)
    study = load_config(path)
    assert str(study.cohort.manifest) == str(manifest.resolve()) and study.outcome.name == "good_outcome"
    assert home_experiment_name(home.resolve()) == study.name
    path.write_text(path.read_text(encoding="utf-8").replace(study.name, "chosen"), encoding="utf-8")
    os.environ.pop(EXPERIMENT_ENV)
    assert activate_study(home, manifest) == path and load_config(path).name == "chosen"  # an existing study is kept
    os.environ.pop(EXPERIMENT_ENV)
    assert activate_study(tmp_path / "empty", None) is None  # no study and no manifest: nothing to activate


def test_config_show_dagster_prints_a_launchpad_config_that_runs_with_the_config(study_file: Path) -> None:
    from typer.testing import CliRunner

    from cssci_platform.cli.main import app

    shown = CliRunner().invoke(app, ["config", "show", "demo", "--dagster", "--set", "models.cv_folds=4"])
    assert shown.exit_code == 0, shown.output
    run_config = yaml.safe_load(shown.output)
    assert probe_job().execute_in_process(run_config=run_config, instance=dg.DagsterInstance.ephemeral()).success
    assert SEEN[-1]["name"] == "demo" and SEEN[-1]["cv_folds"] == 4
