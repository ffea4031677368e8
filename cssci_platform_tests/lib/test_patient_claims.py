"""A patient of a wave is taken by exactly one run, however many ask at once; claims stay inside their folder."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cssci_platform.lib.failures import ExplainedError
from cssci_platform.lib.patient_claims import claim_patient, claims_folder, forget_wave, patient_claimant


def test_each_patient_goes_to_exactly_one_of_the_runs_claiming_it_at_once(tmp_path: Path) -> None:
    folder = claims_folder(tmp_path / "warehouse.duckdb")
    keys = [f"P{i:03d}" for i in range(200)]

    def run(name: str) -> list[str]:
        return [key for key in keys if claim_patient(folder, "w", key, name)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        taken = dict(zip(["a", "b", "c", "d", "e", "f"], pool.map(run, ["a", "b", "c", "d", "e", "f"]), strict=True))
    assert sorted(key for keys_taken in taken.values() for key in keys_taken) == keys  # each once, none lost
    assert all(patient_claimant(folder, "w", key) == name for name, mine in taken.items() for key in mine)
    assert folder == tmp_path / "patient_claims"


def test_claims_are_per_wave_and_forgotten_with_it(tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    assert claim_patient(folder, "w1", "P1", "run-a")
    assert not claim_patient(folder, "w1", "P1", "run-b")
    assert claim_patient(folder, "w2", "P1", "run-b")
    forget_wave(folder, "w1")
    assert patient_claimant(folder, "w1", "P1") is None and patient_claimant(folder, "w2", "P1") == "run-b"


def test_a_key_with_separators_or_dots_stays_one_file_in_its_waves_folder(tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    for key in ["../../escape", "a/b", "..", ".", ""]:
        assert claim_patient(folder, "w", key, "run")
        assert not claim_patient(folder, "w", key, "other")
    assert claim_patient(folder, "..", "P1", "run")  # a wave id cannot leave the folder either
    assert {path.parent for path in folder.rglob("*") if path.is_file()} <= {folder / "w", folder / "%2e2e"}
    assert len(list((folder / "w").iterdir())) == 5 and not (tmp_path / "escape").exists()


def test_a_claims_folder_that_cannot_be_made_is_one_explained_error_naming_the_patient(tmp_path: Path) -> None:
    blocker = tmp_path / "claims"
    blocker.write_text("a file where the claims folder goes", encoding="utf-8")
    with pytest.raises(ExplainedError, match=r"cannot claim patient P1 .*a file stands where a folder .*claims"):
        claim_patient(blocker, "w", "P1", "run")
