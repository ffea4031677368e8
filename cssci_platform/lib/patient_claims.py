"""Which run of a wave processes a patient: the runs of one wave (`cli/patient_runs.py`) are given the same patients,
largest expected work first, and each takes the next patient no run of the wave has taken yet, so the runs end
together whatever the work estimate got wrong (a worker that ends its patients early takes over the rest instead of
idling while the other works through a fixed list).

A claim is a file created exclusively (O_CREAT | O_EXCL: one creator wins, atomically, on a local disk and on NFS
v3+) in the wave's folder under `claims_folder`, beside the warehouse: the folder every run of the home writes, also
in the cluster profile (where the warehouse's wide tables live beside it, on the path every machine shares). Opening
the warehouse to claim would cost ~45 ms a patient and wait for the other runs' writes; a file costs ~0.1 ms."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

from cssci_platform.lib.failures import ExplainedError, storage_problem

CLAIMS_FOLDER = "patient_claims"


def claims_folder(warehouse: Path) -> Path:
    """Where the waves' claims are kept: beside the warehouse file."""
    return Path(warehouse).parent / CLAIMS_FOLDER


def claim_patient(folder: Path, wave: str, patient_key: str, run_id: str) -> bool:
    """True when `run_id` is the first run of `wave` to take the patient (and it now has it), False when another
    run of the wave took it before."""
    claim = folder / _file_name(wave) / _file_name(patient_key)
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        fix = f"make the folder {folder} (beside the warehouse) writable and run the command again"
        explained = storage_problem(str(error), str(claim))
        message = f"cannot claim patient {patient_key} for this run: " + (explained or f"{error}; {fix}.")
        raise ExplainedError(message) from error
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(run_id)
    return True


def patient_claimant(folder: Path, wave: str, patient_key: str) -> str | None:
    """The run of `wave` that took the patient, None while none did."""
    try:
        return (folder / _file_name(wave) / _file_name(patient_key)).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def forget_wave(folder: Path, wave: str) -> None:
    """Remove a finished wave's claims (a wave id is never used again, so a wave left behind by a killed command
    takes a few bytes and blocks nothing)."""
    shutil.rmtree(folder / _file_name(wave), ignore_errors=True)


def _file_name(name: str) -> str:
    """`name` as one path component: no separator, no '..', nothing outside the wave's folder."""
    return quote(name, safe="") if name not in ("", ".", "..") else f"%{name.encode().hex()}"
