"""`cssci demo-data` and `cssci demo` agree (issue 16, CLI): by default both write the cohort of the shipped demo
config (it was 120 + 30 patients for demo-data, 40 + 10 for demo)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cssci_platform.cli.main import app
from cssci_platform.cli.study_commands import demo_overrides, shipped_synthetic_cohort
from cssci_platform.cli.study_stages import write_synthetic_cohort
from cssci_platform.lib.study_config import load_config


def test_demo_data_defaults_are_the_demo_configs_cohort() -> None:
    """What `cssci demo-data` writes when no size or seed is given is the demo config's synthetic cohort."""
    assert shipped_synthetic_cohort("demo") == load_config("demo").cohort.synthetic


def test_demo_data_writes_the_cohort_cssci_demo_writes(tmp_path: Path) -> None:
    """Same settings, same files: demo-data and `cssci demo` write through one writer (small sizes keep this fast; the
    default sizes are the test above)."""
    result = CliRunner().invoke(app, ["demo-data", str(tmp_path / "demo_data"), "--patients", "9", "--prospective",
                                      "3", "--seed", "4"])
    assert result.exit_code == 0, result.output
    synthetic = load_config("demo").cohort.synthetic
    assert synthetic is not None
    synthetic = synthetic.model_copy(update={"patients": 9, "prospective": 3, "seed": 4})
    write_synthetic_cohort(synthetic, tmp_path / "demo")  # what `cssci demo` writes (study_stages.prepare_cohort)
    written = (tmp_path / "demo_data" / "patients.csv").read_text(encoding="utf-8")
    assert written == (tmp_path / "demo" / "patients.csv").read_text(encoding="utf-8")
    cohorts = [line.split(",")[2] for line in written.splitlines()[1:]]
    assert (cohorts.count("development"), cohorts.count("prospective")) == (9, 3)


def test_demo_keeps_the_demo_config_cohort_unless_an_option_is_given() -> None:
    defaults = demo_overrides({"patients": None, "prospective": None, "seed": None}, "resnet18", "none", "all", 5)
    assert load_config("demo", defaults).cohort.synthetic == load_config("demo").cohort.synthetic
    chosen = demo_overrides({"patients": 200, "prospective": 0, "seed": 3}, "resnet18", "none", "all", 5)
    synthetic = load_config("demo", chosen).cohort.synthetic
    assert synthetic is not None and (synthetic.patients, synthetic.prospective, synthetic.seed) == (200, 0, 3)
