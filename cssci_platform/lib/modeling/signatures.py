"""The studies' signatures and how results are named in their tables (e.g. ``Rad + ResNet34_RandomForest``).

The study config parses signatures with this module, so nothing here imports pandas at import time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cssci_platform.lib.modeling.matrix import CLIN, DL, RAD, feature_columns

if TYPE_CHECKING:
    import pandas as pd

SignatureKind = Literal["rad", "dl", "rad+dl", "clinical", "combined"]


@dataclass(frozen=True)
class Signature:
    kind: SignatureKind
    backbone: str | None = None

    @property
    def name(self) -> str:
        """The identifier used in configs, DuckDB and MLflow: Rad, DL_resnet34, Rad+DL_resnet34, Clinical, Combined."""
        return {
            "rad": "Rad",
            "dl": f"DL_{self.backbone}",
            "rad+dl": f"Rad+DL_{self.backbone}",
            "clinical": "Clinical",
            "combined": "Combined",
        }[self.kind]

    @property
    def display(self) -> str:
        """As the studies print it: Rad, ResNet34, Rad + ResNet34, Clinical, Combined."""
        network = (self.backbone or "").replace("resnet", "ResNet")
        return {
            "rad": "Rad",
            "dl": network,
            "rad+dl": f"Rad + {network}",
            "clinical": "Clinical",
            "combined": "Combined",
        }[self.kind]

    def columns(self, matrix: pd.DataFrame) -> list[str]:
        """The feature columns this signature models (Combined: clinical + radiomics; its Rad-score is fitted
        inside)."""
        rad, clin = feature_columns(matrix, RAD), feature_columns(matrix, CLIN)
        dl = feature_columns(matrix, f"{DL}{self.backbone}__") if self.backbone else []
        chosen = {"rad": rad, "dl": dl, "rad+dl": rad + dl, "clinical": clin, "combined": clin + rad}[self.kind]
        if not chosen:
            raise ValueError(
                f"signature {self.name}: the feature matrix has no {self.kind} columns "
                f"(materialize the features it needs first)"
            )
        return chosen


def parse_signature(name: str) -> Signature:
    """Inverse of `Signature.name`."""
    if name in ("Rad", "Clinical", "Combined"):
        return Signature({"Rad": "rad", "Clinical": "clinical", "Combined": "combined"}[name])  # type: ignore[arg-type]
    if name.startswith("Rad+DL_"):
        return Signature("rad+dl", name.removeprefix("Rad+DL_"))
    if name.startswith("DL_"):
        return Signature("dl", name.removeprefix("DL_"))
    raise ValueError(f"unknown signature '{name}'; use Rad, DL_<backbone>, Rad+DL_<backbone>, Clinical or Combined")


def result_name(signature: Signature, classifier: str) -> str:
    """The row label of the studies' performance tables."""
    return f"{signature.display}_{classifier}"


def standard_signatures(backbones: list[str], with_clinical: bool = True) -> list[Signature]:
    signatures = [Signature("rad")]
    signatures += [Signature("dl", b) for b in backbones] + [Signature("rad+dl", b) for b in backbones]
    if with_clinical:
        signatures += [Signature("clinical"), Signature("combined")]
    return signatures


def study_signatures(configured: list[str] | None, matrix: pd.DataFrame) -> list[Signature]:
    """The configured signatures (`models.signatures`), or by default the standard set the matrix supports: Rad,
    DL_/Rad+DL_ per backbone with deep columns, and Clinical and Combined when it has clinical columns."""
    if configured is not None:
        return [parse_signature(name) for name in configured]
    backbones = sorted({c.split("__")[1] for c in matrix.columns if c.startswith(DL)})
    return standard_signatures(backbones, with_clinical=any(c.startswith(CLIN) for c in matrix.columns))
