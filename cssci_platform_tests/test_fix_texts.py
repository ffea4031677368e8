"""Fix texts name settings that exist: ComBat's says how the experiment config turns harmonization off."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from cssci_platform.defs.models.checks import combat_batches_estimable
from cssci_platform.lib.study_config import load_config
from cssci_platform.resources.warehouse import WarehouseResource


def test_combats_fix_text_names_the_config_key_that_turns_it_off(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE feature_matrix AS SELECT * FROM "
            "(VALUES ('P1', 'A'), ('P2', 'A'), ('P3', 'B')) t(patient_key, center)"
        )
        con.execute(
            "CREATE TABLE splits AS SELECT 'holdout_8_2' AS split, 'holdout' AS fold, patient_key, 'train' AS role "
            "FROM feature_matrix"
        )
    result = combat_batches_estimable(warehouse=WarehouseResource(path=str(path)))
    assert isinstance(result, dg.AssetCheckResult) and not result.passed  # center B has one training patient
    assert "harmonization.enabled: false" in result.description and "harmonize: false" not in result.description
    assert load_config("demo", ["harmonization.enabled=false"]).harmonization.enabled is False  # the key it names works
