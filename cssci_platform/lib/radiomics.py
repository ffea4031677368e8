"""PyRadiomics facade: versioned parameter profiles, cached extractors, per-case and across-patient extraction.

Pure domain code (no Dagster). Parameter profiles live in ``cssci_platform/configs/radiomics/<name>.yaml``
(standard PyRadiomics ``setting`` / ``imageType`` / ``featureClass`` format); every result can be traced to
the exact YAML text through :attr:`RadiomicsParams.sha256` and :func:`extractor_version`.

PyRadiomics is single-threaded per case; parallelism is across patients, one process each (the patient runs
of the command line), so :func:`extract_cases` runs one patient's cases in turn.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml

PROFILE_DIR = Path(__file__).resolve().parents[1] / "configs" / "radiomics"
DEFAULT_FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
SHAPE_CLASSES = ("shape", "shape2D")  # computed from the mask alone (on the original image type only)
_DOCUMENT_KEYS = {"setting", "imageType", "featureClass", "voxelSetting"}

CaseResult = tuple[str, "dict[str, float] | RadiomicsError"]


class RadiomicsError(Exception):
    """Feature extraction or parameter problem; the message names the case/file and what is wrong."""


@dataclass(frozen=True)
class RadiomicsParams:
    """A validated PyRadiomics parameter set and the exact YAML text it came from.

    ``settings`` is the ``setting`` section; ``image_types`` / ``feature_classes`` the other two sections.
    ``sha256`` is the hash of ``text`` and identifies the parameters in stored results.
    """

    name: str
    settings: dict[str, Any]
    text: str
    sha256: str
    path: Path | None = None
    image_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    feature_classes: dict[str, list[str] | None] = field(default_factory=dict)

    def __hash__(self) -> int:  # the dict fields are not hashable; the text hash identifies the params
        return hash(self.sha256)

    def document(self) -> dict[str, Any]:
        """The parameter document in PyRadiomics' dictionary format."""
        return {"setting": self.settings, "imageType": self.image_types, "featureClass": self.feature_classes}


@dataclass(frozen=True)
class RadiomicsCase:
    """One image/mask pair to extract; ``label`` is the mask value of the ROI."""

    case_id: str
    image_path: Path
    mask_path: Path
    label: int = 1


# ---------------------------------------------------------------------------------------------- parameters


def available_profiles() -> list[str]:
    """Names of the parameter profiles shipped with the package."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_params(profile_or_path: str | Path) -> RadiomicsParams:
    """Load a shipped profile (``"default"``, ``"original_log_wavelet"``) or a PyRadiomics YAML file."""
    path = _resolve_params_path(profile_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RadiomicsError(f"cannot read radiomics parameter file {path}: {exc}") from exc
    return _make_params(path.stem, _parse_document(text, str(path)), text, path)


def params_from_settings(
    settings: dict[str, Any],
    image_types: dict[str, Any] | None = None,
    feature_classes: dict[str, Any] | None = None,
    name: str = "custom",
) -> RadiomicsParams:
    """Build params from dictionaries (image types default to Original, classes to the 7 standard ones)."""
    document = {
        "setting": dict(settings),
        "imageType": dict(image_types) if image_types is not None else {"Original": {}},
        "featureClass": dict(feature_classes)
        if feature_classes is not None
        else {name_: None for name_ in DEFAULT_FEATURE_CLASSES},
    }
    text = yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return _make_params(name, _parse_document(text, f"params {name!r}"), text, None)


def _resolve_params_path(profile_or_path: str | Path) -> Path:
    text = str(profile_or_path)
    looks_like_path = isinstance(profile_or_path, Path) or os.sep in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(profile_or_path)
        if not path.is_file():
            raise RadiomicsError(f"radiomics parameter file {path} does not exist")
        return path
    path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise RadiomicsError(
            f"unknown radiomics profile {text!r}; available profiles: {', '.join(available_profiles())} "
            "(or pass the path of a PyRadiomics YAML parameter file)"
        )
    return path


def _parse_document(text: str, where: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RadiomicsError(f"radiomics parameters {where}: invalid YAML: {exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise RadiomicsError(f"radiomics parameters {where}: expected a mapping, got {type(document).__name__}")
    unknown = set(document) - _DOCUMENT_KEYS
    if unknown:
        raise RadiomicsError(
            f"radiomics parameters {where}: unknown top-level keys {sorted(unknown)}; "
            f"allowed: {sorted(_DOCUMENT_KEYS)}"
        )
    return document


def _make_params(name: str, document: dict[str, Any], text: str, path: Path | None) -> RadiomicsParams:
    params = RadiomicsParams(
        name=name,
        settings=dict(document.get("setting") or {}),
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        path=path,
        image_types={k: dict(v or {}) for k, v in (document.get("imageType") or {}).items()},
        feature_classes=dict(document.get("featureClass") or {}),
    )
    try:
        _extractor(params)  # validates against PyRadiomics' schema and warms the cache
    except Exception as exc:  # pykwalify raises its own error types
        where = path if path is not None else f"params {name!r}"
        raise RadiomicsError(f"invalid PyRadiomics parameters in {where}: {exc}") from exc
    return params


# ----------------------------------------------------------------------------------------------- extraction


def extractor_version() -> str:
    """The installed PyRadiomics distribution and version, e.g. ``"pyradiomics-bhklab 3.1.4"``."""
    for distribution in ("pyradiomics-bhklab", "pyradiomics"):
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    import radiomics

    return f"pyradiomics {str(radiomics.__version__).lstrip('v')}"


def _quiet_pyradiomics() -> None:
    """PyRadiomics logs every step at INFO; keep its warnings, drop the chatter (root logger untouched)."""
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    # glcm warns "Sum Average = 2 * Joint Average" for every image type of every case whenever SumAverage
    # (a default feature) is on; its other warnings concern settings the schema already validates.
    logging.getLogger("radiomics.glcm").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)  # schema errors are re-raised as RadiomicsError


def _extractor(params: RadiomicsParams) -> Any:
    return _cached_extractor(params.sha256, params.text)


@functools.lru_cache(maxsize=16)
def _cached_extractor(sha256: str, text: str) -> Any:
    """One RadiomicsFeatureExtractor per parameter text (construction validates the schema: not per case)."""
    _quiet_pyradiomics()
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    with warnings.catch_warnings():  # pykwalify loads PyRadiomics' schema extension with imp's load_module()
        warnings.filterwarnings("ignore", message="the load_module", category=DeprecationWarning)
        return RadiomicsFeatureExtractor(yaml.safe_load(text) or {})


def extract_features(
    image: sitk.Image, mask: sitk.Image, params: RadiomicsParams, label: int | None = None
) -> dict[str, float]:
    """Feature name (e.g. ``original_glcm_Contrast``) -> value for one image/mask pair.

    ``diagnostics_*`` entries are dropped. Raises :class:`RadiomicsError` for an empty or too small ROI, a
    geometry mismatch, or a LoG sigma PyRadiomics skipped because the image is too small.
    """
    label = int(params.settings.get("label", 1) if label is None else label)
    try:
        raw = _extractor(params).execute(image, mask, label=label)
    except Exception as exc:
        raise RadiomicsError(_explain_failure(image, mask, label, exc)) from exc
    features = {key: float(value) for key, value in raw.items() if not key.startswith("diagnostics_")}
    _check_log_sigmas(params, features, image)
    return features


def _explain_failure(image: sitk.Image, mask: sitk.Image, label: int, exc: Exception) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    try:
        values = sitk.GetArrayViewFromImage(mask)
        n_voxels = int(np.count_nonzero(values == label))
        present = sorted(int(v) for v in np.unique(values) if v != 0)
    except Exception:  # mask not a scalar image: report PyRadiomics' own message
        return f"feature extraction failed for label {label}: {reason}"
    if n_voxels == 0:
        return f"empty ROI: label {label} has no voxels in the mask (non-zero labels present: {present or 'none'})"
    mismatch = _geometry_mismatch(image, mask)
    if mismatch:
        return f"image/mask geometry mismatch (label {label}): {mismatch}; {reason}"
    return f"ROI with label {label} ({n_voxels} voxels) rejected: {reason}"


def _geometry_mismatch(image: sitk.Image, mask: sitk.Image) -> str:
    """Which grid attributes differ between image and mask ('' when none do, to 1e-6 relative)."""
    differing = []
    for attribute in ("Size", "Spacing", "Origin", "Direction"):
        ours, theirs = getattr(image, f"Get{attribute}")(), getattr(mask, f"Get{attribute}")()
        if len(ours) != len(theirs) or not np.allclose(ours, theirs, rtol=1e-6, atol=1e-6):
            rounded = [tuple(round(v, 4) for v in x) for x in (ours, theirs)]
            differing.append(f"{attribute.lower()} image {rounded[0]} vs mask {rounded[1]}")
    return ", ".join(differing)


def _check_log_sigmas(params: RadiomicsParams, features: dict[str, float], image: sitk.Image) -> None:
    """PyRadiomics silently skips a LoG sigma when the (cropped) image is too small: make that an error."""
    log_settings = params.image_types.get("LoG")
    if log_settings is None or not set(params.feature_classes) - set(SHAPE_CLASSES):
        return
    sigmas = log_settings.get("sigma", params.settings.get("sigma", []))
    missing = [s for s in sigmas if not any(k.startswith(_log_prefix(s)) for k in features)]
    if missing:
        raise RadiomicsError(
            f"LoG sigma {missing} mm skipped by PyRadiomics: image (size {image.GetSize()}, spacing "
            f"{tuple(round(s, 3) for s in image.GetSpacing())}) too small around the ROI; each axis needs "
            "at least ceil(sigma / spacing) + 1 voxels after cropping with padDistance"
        )


def _log_prefix(sigma: float) -> str:
    return f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D_"


# ------------------------------------------------------------------------------------------ across patients


def extract_cases(cases: Sequence[RadiomicsCase], params: RadiomicsParams) -> list[CaseResult]:
    """Extract every case in turn; order preserved. A failing case yields ``(case_id, RadiomicsError)`` and never
    stops the others.

    Shape features depend on the mask alone, and computing them (marching cubes, then the largest diameters over
    the mesh) is most of a large ROI's extraction: cases on the same mask file and label (a patient's filter
    channels) compute them once, with the first such case that succeeds, and the others copy them. Values and their
    order are those of extracting each case on its own (`_without_shape` says when sharing is not possible)."""
    shapeless = _without_shape(params)
    shapes: dict[tuple[Path, int], dict[str, float]] = {}
    results: list[CaseResult] = []
    for case in cases:
        mask = (Path(case.mask_path), case.label)
        if shapeless is None or mask not in shapes:
            case_id, outcome = _extract_case(case, params)
            if shapeless is not None and not isinstance(outcome, RadiomicsError):
                shapes[mask] = {name: value for name, value in outcome.items() if _is_shape_feature(name)}
        else:
            case_id, outcome = _extract_case(case, shapeless)
            if not isinstance(outcome, RadiomicsError):
                outcome = {**shapes[mask], **outcome}  # PyRadiomics computes shape first: the same order
        results.append((case_id, outcome))
    return results


def _is_shape_feature(name: str) -> bool:
    """`original_shape_Elongation`, `original_shape2D_Perimeter` (shape is computed on the original image only)."""
    return name.split("_")[1] in SHAPE_CLASSES


def _without_shape(params: RadiomicsParams) -> RadiomicsParams | None:
    """The same parameters without the shape classes, for further images on a mask whose shape features are known;
    None when they cannot be shared: no shape class is on, nothing but shape is on, or `resegmentRange` makes the
    ROI depend on the image's intensities."""
    classes = params.feature_classes or {name: None for name in DEFAULT_FEATURE_CLASSES}
    others = {name: features for name, features in classes.items() if name not in SHAPE_CLASSES}
    if params.settings.get("resegmentRange") or not others or len(others) == len(classes):
        return None
    document = {**params.document(), "featureClass": others}
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)  # PyRadiomics runs classes in order
    return _make_params(params.name, document, text, params.path)


def _extract_case(case: RadiomicsCase, params: RadiomicsParams) -> CaseResult:
    where = f"case {case.case_id} (image {case.image_path}, mask {case.mask_path})"
    try:
        image = _read_image(Path(case.image_path), "image")
        mask = _read_image(Path(case.mask_path), "mask")
        return case.case_id, extract_features(image, mask, params, label=case.label)
    except RadiomicsError as exc:
        return case.case_id, RadiomicsError(f"{where}: {exc}")
    except Exception as exc:  # a bug in a dependency must still not stop the cohort
        return case.case_id, RadiomicsError(f"{where}: unexpected {type(exc).__name__}: {exc}")


def _read_image(path: Path, what: str) -> sitk.Image:
    if not path.is_file():
        raise RadiomicsError(f"{what} file does not exist: {path}")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK: "Exception thrown in ...cxx:99:\nsitk::ERROR: <the reason>"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
        raise RadiomicsError(f"cannot read {what} file {path}: {lines[-1].removeprefix('sitk::ERROR: ')}") from exc
