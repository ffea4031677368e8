"""Tests of the synthetic demo cohorts: format, determinism, geometry, masks and the planted effects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import SimpleITK as sitk
import yaml

from cssci_platform.lib import synthetic
from cssci_platform.lib.cohort import load_cohort

N_DEVELOPMENT, N_PROSPECTIVE, SEED = 24, 6, 7
SCI_FILES = ("sag_T1", "sag_T2", "sag_T1_lesion", "sag_T1_cord", "sag_T2_lesion", "sag_T2_cord")


def read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def voxels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(read(path))


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC: P(score of a positive > score of a negative), ties count half."""
    positives, negatives = score[label == 1], score[label == 0]
    greater = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(greater / (len(positives) * len(negatives)))


def table_and_truth(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.read_csv(root / "patients.csv", infer_schema=False), pl.read_csv(root / "truth.csv")


@pytest.fixture(scope="module")
def sci_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sci")
    assert synthetic.write_sci_cohort(root, N_DEVELOPMENT, N_PROSPECTIVE, seed=SEED) == root / "cohort.yaml"
    return root


@pytest.fixture(scope="module")
def metastasis_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("metastasis")
    assert synthetic.write_metastasis_cohort(root, n_patients=12, seed=11) == root / "cohort.yaml"
    return root


# ------------------------------------------------------------------------------------------- SCI: format
def test_sci_manifest_is_exactly_the_agreed_format(sci_root):
    manifest = yaml.safe_load((sci_root / "cohort.yaml").read_text(encoding="utf-8"))
    assert list(manifest) == [
        "manifest_version",
        "name",
        "table",
        "data_root",
        "centers",
        "sequences",
        "rois",
        "mask_label",
        "clinical",
        "outcomes",
    ]
    assert manifest["centers"] == ["center_A", "center_B", "center_C"]
    assert manifest["sequences"] == ["sag_T1", "sag_T2"] and manifest["rois"] == ["lesion", "cord"]
    assert manifest["clinical"]["asia_grade"] == {"type": "categorical", "levels": ["A", "B", "C", "D"]}
    assert manifest["outcomes"] == {"good_outcome": {"type": "binary"}}
    table, _ = table_and_truth(sci_root)
    assert table.columns == synthetic.SCI_COLUMNS
    assert table.height == N_DEVELOPMENT + N_PROSPECTIVE and table["patient_id"].is_unique().all()
    assert table.filter(pl.col("cohort") == "development").height == N_DEVELOPMENT
    assert set(table["cohort"]) == {"development", "prospective"}
    assert table["patient_id"][0] == "SCI-A-0001"
    for column in ("diabetes", "hypertension", "smoking"):
        assert set(table[column]) <= {"0", "1"}
    path_columns = [c for c in table.columns if c.startswith(("image__", "mask__"))]
    for path in table.select(path_columns).to_numpy().ravel():
        assert path is None or ((sci_root / path).is_file() and "\\" not in path and not Path(path).is_absolute())


def test_sci_centers_are_unbalanced_and_differ_in_spacing_and_intensity(sci_root):
    table, _ = table_and_truth(sci_root)
    counts = table.group_by("center").len().sort("center")["len"].to_list()
    assert len(counts) == 3 and len(set(counts)) == 3
    spacing_by_center, cord_mean_by_center = {}, {}
    for center in ("center_A", "center_B", "center_C"):
        rows = table.filter(pl.col("center") == center)
        spacing_by_center[center] = {read(sci_root / p).GetSpacing() for p in rows["image__sag_T2"]}
        pairs = zip(rows["image__sag_T2"], rows["mask__sag_T2__cord"])
        cord_means = [voxels(sci_root / image)[voxels(sci_root / mask) == 1].mean() for image, mask in pairs]
        cord_mean_by_center[center] = np.mean(cord_means)
    assert all(len(s) == 1 for s in spacing_by_center.values())
    spacings = [next(iter(s)) for s in spacing_by_center.values()]
    assert len(set(spacings)) == 3 and all(s[0] > 2 * s[1] and s[1] == s[2] for s in spacings)  # thick LR slices
    means = sorted(cord_mean_by_center.values())
    assert means[1] > 1.2 * means[0] and means[2] > 1.2 * means[1]


# ------------------------------------------------------------------------------------------- SCI: determinism
def test_sci_same_seed_gives_identical_files_and_other_seed_differs(sci_root, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    synthetic.write_sci_cohort(again, N_DEVELOPMENT, N_PROSPECTIVE, seed=SEED)
    synthetic.write_sci_cohort(other, 3, 0, seed=SEED + 1)  # same first patient ids, few to keep the test fast
    for name in ("patients.csv", "truth.csv", "followup/outcomes.csv", "cohort.yaml"):
        assert (sci_root / name).read_text(encoding="utf-8") == (again / name).read_text(encoding="utf-8")
    first_rows = pl.read_csv(sci_root / "truth.csv").head(1), pl.read_csv(other / "truth.csv").head(1)
    assert first_rows[0]["patient_id"].item() == first_rows[1]["patient_id"].item()
    assert first_rows[0]["lesion_length_mm"].item() != first_rows[1]["lesion_length_mm"].item()
    images = sorted(p.relative_to(sci_root) for p in (sci_root / "images").rglob("*.nii.gz"))
    assert images == sorted(p.relative_to(again) for p in (again / "images").rglob("*.nii.gz"))
    for relative in images:
        assert np.array_equal(voxels(sci_root / relative), voxels(again / relative))
    first = Path("images/SCI-A-0001/sag_T2.nii.gz")
    assert not np.array_equal(voxels(sci_root / first), voxels(other / first))


def test_sci_patient_parameters_do_not_depend_on_cohort_size():
    small = {p.patient_id: p for p in synthetic.sample_sci_patients(10, 0, seed=3)}
    large = {p.patient_id: p for p in synthetic.sample_sci_patients(60, 20, seed=3)}
    assert small.keys() <= large.keys()
    for patient_id, patient in small.items():
        assert patient.true_logit == large[patient_id].true_logit and patient.age == large[patient_id].age


def test_sci_rejects_invalid_rater_fraction(tmp_path):
    with pytest.raises(ValueError, match="second_rater_fraction"):
        synthetic.write_sci_cohort(tmp_path, 4, 0, second_rater_fraction=1.5)


# ------------------------------------------------------------------------------------------- SCI: images and masks
def test_sci_images_and_masks_share_geometry_and_masks_are_nested(sci_root):
    for patient_dir in sorted((sci_root / "images").iterdir()):
        images = {name: read(patient_dir / f"{name}.nii.gz") for name in SCI_FILES}
        assert len({geometry(image) for image in images.values()}) == 1
        assert images["sag_T2"].GetPixelID() == sitk.sitkInt16
        for sequence in ("sag_T1", "sag_T2"):
            lesion, cord = (sitk.GetArrayFromImage(images[f"{sequence}_{roi}"]) for roi in ("lesion", "cord"))
            assert images[f"{sequence}_lesion"].GetPixelID() == sitk.sitkUInt8
            assert set(np.unique(cord)) == {0, 1} and lesion.sum() > 0
            assert np.all(cord[lesion == 1] == 1), f"{patient_dir.name}: lesion outside cord"


def test_sci_lesion_is_hyperintense_on_t2_and_csf_contrast_flips(sci_root):
    for patient_dir in sorted((sci_root / "images").iterdir())[:6]:
        t1, t2 = voxels(patient_dir / "sag_T1.nii.gz"), voxels(patient_dir / "sag_T2.nii.gz")
        lesion = voxels(patient_dir / "sag_T2_lesion.nii.gz") == 1
        cord_only = (voxels(patient_dir / "sag_T2_cord.nii.gz") == 1) & ~lesion
        assert t2[lesion].mean() > t2[cord_only].mean() and t1[lesion].mean() <= t1[cord_only].mean() * 1.05


def test_sci_second_rater_masks_cover_requested_fraction_and_vary_plausibly(sci_root):
    table, _ = table_and_truth(sci_root)
    rated = table.filter(pl.col("mask__sag_T2__lesion__rater2").is_not_null())
    assert rated.height == round(0.25 * N_DEVELOPMENT) and set(rated["cohort"]) == {"development"}
    unrated_ids = set(table["patient_id"]) - set(rated["patient_id"])
    assert not any((sci_root / "images" / pid / "sag_T2_lesion_rater2.nii.gz").exists() for pid in unrated_ids)
    for first, second in zip(rated["mask__sag_T2__lesion"], rated["mask__sag_T2__lesion__rater2"]):
        assert geometry(read(sci_root / first)) == geometry(read(sci_root / second))
        a, b = voxels(sci_root / first) == 1, voxels(sci_root / second) == 1
        assert not np.array_equal(a, b) and dice(a, b) > 0.7


def test_sci_prospective_outcomes_are_hidden_and_in_followup(sci_root):
    table, truth = table_and_truth(sci_root)
    prospective = table.filter(pl.col("cohort") == "prospective")
    development = table.filter(pl.col("cohort") == "development")
    assert prospective.height == N_PROSPECTIVE
    assert prospective["good_outcome"].is_null().all() and prospective["outcome_date"].is_null().all()
    assert development["good_outcome"].is_in(["0", "1"]).all() and development["outcome_date"].is_not_null().all()
    followup = pl.read_csv(sci_root / "followup" / "outcomes.csv")
    assert followup.columns == ["patient_id", "outcome", "value", "outcome_date"]
    assert sorted(followup["patient_id"]) == sorted(prospective["patient_id"])
    assert set(followup["outcome"]) == {"good_outcome"}
    expected = dict(zip(truth["patient_id"], truth["good_outcome"]))
    assert all(expected[pid] == value for pid, value in zip(followup["patient_id"], followup["value"]))


def test_sci_images_carry_the_planted_lesion_features(sci_root):
    _, truth = table_and_truth(sci_root)
    measured_length, measured_t2 = [], []
    for row in truth.iter_rows(named=True):
        lesion_image = read(sci_root / "images" / row["patient_id"] / "sag_T2_lesion.nii.gz")
        lesion = sitk.GetArrayFromImage(lesion_image) == 1
        slices = np.flatnonzero(lesion.any(axis=(1, 2)))
        measured_length.append((slices[-1] - slices[0] + 1) * lesion_image.GetSpacing()[2])
        center = next(c for c in synthetic.SCI_CENTERS if c.name == row["center"]).acquisition
        t2 = voxels(sci_root / "images" / row["patient_id"] / "sag_T2.nii.gz")
        measured_t2.append((t2[lesion].mean() - center.intensity_offset) / center.intensity_scale)
    assert np.corrcoef(measured_length, truth["lesion_length_mm"])[0, 1] > 0.95
    assert np.corrcoef(measured_t2, truth["lesion_t2_mean"])[0, 1] > 0.5


# ------------------------------------------------------------------------------------- SCI: planted outcome effect
@pytest.mark.parametrize(
    ("protocol", "logit_auc", "imaging_auc"),
    [("demo", (0.86, 0.95), (0.83, 0.93)), ("ianr", (0.78, 0.90), (0.68, 0.82))],
)
def test_sci_planted_effect_is_recoverable_on_a_large_cohort(protocol, logit_auc, imaging_auc):
    # the demo plants its imaging terms DEMO_IMAGING_SCALE times stronger (issue 18); other protocols keep theirs
    patients = synthetic.sample_sci_patients(n_development=2000, n_prospective=0, seed=21, protocol=protocol)
    outcome = np.array([p.good_outcome for p in patients])
    assert 0.4 < outcome.mean() < 0.65
    assert auc(np.array([p.lesion_length_mm for p in patients]), outcome) < 0.35  # longer lesion, worse outcome
    assert auc(np.array([p.lesion_t2_mean for p in patients]), outcome) < 0.47
    assert auc(np.array([p.lesion_heterogeneity for p in patients]), outcome) < 0.47
    assert auc(np.array([p.age for p in patients]), outcome) < 0.47
    assert logit_auc[0] < auc(np.array([p.true_logit for p in patients]), outcome) < logit_auc[1]
    imaging = np.array(
        [synthetic.sci_imaging_logit(p.lesion_length_mm, p.lesion_t2_mean, p.lesion_heterogeneity) for p in patients]
    )
    assert imaging_auc[0] < auc(imaging, outcome) < imaging_auc[1]  # real but imperfect


def test_sci_demo_scales_only_the_imaging_terms_of_the_shared_patients():
    assert synthetic.default_imaging_scale("demo") == synthetic.DEMO_IMAGING_SCALE
    assert synthetic.default_imaging_scale("ianr") == synthetic.default_imaging_scale("upper_limb") == 1
    demo, unscaled, ianr = (synthetic.sample_sci_patients(60, 0, seed=5, protocol=p, imaging_scale=scale)
                            for p, scale in (("demo", None), ("demo", 1.0), ("ianr", None)))
    for d, u, i in zip(demo, unscaled, ianr):
        assert (d.patient_id, d.lesion_length_mm, d.age, d.asia_grade) == (i.patient_id, i.lesion_length_mm, i.age,
                                                                            i.asia_grade)
        assert dataclasses.replace(u, true_logit=d.true_logit, good_outcome=d.good_outcome) == d
        extra = synthetic.ianr_logit_extra(i.brain_injury, i.injury_site)
        assert u.true_logit == pytest.approx(i.true_logit - extra, abs=1e-12)  # imaging_scale=1: as before issue 18
        imaging = synthetic.sci_imaging_logit(i.lesion_length_mm, i.lesion_t2_mean, i.lesion_heterogeneity)
        # tolerance: the stored lesion values are rounded
        assert d.true_logit - u.true_logit == pytest.approx((synthetic.DEMO_IMAGING_SCALE - 1) * imaging, abs=1e-3)


def test_sci_lesion_length_effect_is_visible_in_a_200_patient_cohort():
    patients = synthetic.sample_sci_patients(n_development=200, n_prospective=0, seed=7)
    outcome = np.array([p.good_outcome for p in patients])
    assert auc(np.array([p.lesion_length_mm for p in patients]), outcome) < 0.4


def test_sci_truth_file_matches_the_sampled_parameters(sci_root):
    _, truth = table_and_truth(sci_root)
    sampled = synthetic.sample_sci_patients(N_DEVELOPMENT, N_PROSPECTIVE, seed=SEED)
    assert truth["patient_id"].to_list() == [p.patient_id for p in sampled]
    assert truth["lesion_length_mm"].to_list() == [p.lesion_length_mm for p in sampled]
    assert np.allclose(truth["true_probability"], 1 / (1 + np.exp(-truth["true_logit"].to_numpy())), atol=1e-5)


# ------------------------------------------------------------------------------------------- metastasis
def test_metastasis_manifest_and_columns(metastasis_root):
    manifest = yaml.safe_load((metastasis_root / "cohort.yaml").read_text(encoding="utf-8"))
    assert manifest["sequences"] == ["sag_T1", "sag_T2", "sag_FST2"] and manifest["rois"] == ["lesion", "vertebra"]
    assert manifest["outcomes"] == {
        "primary_site": {"type": "multiclass", "levels": ["lung", "kidney", "breast", "thyroid", "prostate"]}
    }
    assert len(manifest["centers"]) >= 2
    table, _ = table_and_truth(metastasis_root)
    assert table.columns == synthetic.METASTASIS_COLUMNS
    assert set(table["cohort"]) == {"development"}
    assert set(table["primary_site"]) == {"lung", "kidney", "breast", "thyroid", "prostate"}
    assert set(table.filter(pl.col("primary_site") == "prostate")["sex"]) == {"M"}
    assert set(table["lesion_pattern"]) <= {"lytic", "blastic", "mixed"}


def test_metastasis_images_and_masks(metastasis_root):
    table, _ = table_and_truth(metastasis_root)
    spacings = set()
    for row in table.iter_rows(named=True):
        paths = [metastasis_root / v for k, v in row.items() if k.startswith(("image__", "mask__"))]
        assert len({geometry(read(p)) for p in paths}) == 1
        spacings.add(read(paths[0]).GetSpacing())
        for sequence in synthetic.METASTASIS_SEQUENCES:
            lesion = voxels(metastasis_root / row[f"mask__{sequence}__lesion"]) == 1
            vertebra = voxels(metastasis_root / row[f"mask__{sequence}__vertebra"]) == 1
            assert lesion.any() and np.all(vertebra[lesion]) and vertebra.sum() > lesion.sum()
    assert len(spacings) >= 2


def test_metastasis_class_signatures_on_a_large_sample():
    patients = synthetic.sample_metastasis_patients(n_patients=500, seed=5)
    by_site = {c.name: [p for p in patients if p.primary_site.name == c.name] for c in synthetic.METASTASIS_CLASSES}
    sizes = {site: len(group) for site, group in by_site.items()}
    assert min(sizes.values()) > 0 and sizes["lung"] == max(sizes.values())
    assert {p.sex for p in by_site["prostate"]} == {"M"}
    assert np.mean([p.sex == "F" for p in by_site["breast"]]) > 0.9
    assert np.mean([p.lesion_pattern == "blastic" for p in by_site["prostate"]]) > 0.6
    assert np.mean([p.lesion_pattern == "lytic" for p in by_site["kidney"]]) > 0.8
    mean_t2 = {site: np.mean([p.lesion_signal("sag_T2") for p in group]) for site, group in by_site.items()}
    assert mean_t2["kidney"] > mean_t2["lung"] > mean_t2["prostate"]
    assert np.mean([p.n_vertebrae_involved for p in by_site["prostate"]]) > np.mean(
        [p.n_vertebrae_involved for p in by_site["kidney"]]
    )


def test_metastasis_same_seed_is_deterministic(metastasis_root, tmp_path):
    synthetic.write_metastasis_cohort(tmp_path, n_patients=12, seed=11)
    assert (tmp_path / "patients.csv").read_text(encoding="utf-8") == (metastasis_root / "patients.csv").read_text(
        encoding="utf-8"
    )
    assert (tmp_path / "truth.csv").read_text(encoding="utf-8") == (metastasis_root / "truth.csv").read_text(
        encoding="utf-8"
    )
    for path in (metastasis_root / "images").rglob("sag_FST2*.nii.gz"):
        assert np.array_equal(voxels(path), voxels(tmp_path / path.relative_to(metastasis_root)))


# ------------------------------------------------------------------------------------------- SCI: study protocols
PROTOCOL_DEVELOPMENT, PROTOCOL_PROSPECTIVE = 4, 2
PROTOCOL_SEQUENCES = {"ianr": ["sag_T1", "sag_T2", "ax_T1", "ax_T2", "cor_T1", "cor_T2"], "upper_limb": ["sag_T2"]}
PROTOCOL_OUTCOME = {"ianr": "ianr_6m", "upper_limb": "uems_1y"}


def write_protocol(root: Path, protocol: str) -> Path:
    return synthetic.write_sci_cohort(
        root, PROTOCOL_DEVELOPMENT, PROTOCOL_PROSPECTIVE, seed=SEED, second_rater_fraction=0.5, protocol=protocol
    )


@pytest.fixture(scope="module")
def protocol_cohort(tmp_path_factory):
    """protocol -> root of its small cohort, written once per module on first use."""
    roots: dict[str, Path] = {}

    def root_of(protocol: str) -> Path:
        if protocol not in roots:
            roots[protocol] = tmp_path_factory.mktemp(protocol)
            assert write_protocol(roots[protocol], protocol) == roots[protocol] / "cohort.yaml"
        return roots[protocol]

    return root_of


@pytest.fixture(params=["ianr", "upper_limb"])
def protocol_root(request, protocol_cohort) -> tuple[str, Path]:
    return request.param, protocol_cohort(request.param)


def physical_centroid(path: Path) -> np.ndarray:
    image = read(path)
    index = np.argwhere(sitk.GetArrayFromImage(image) == 1).mean(axis=0)[::-1]  # (z, y, x) -> (x, y, z)
    return np.array(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def derived_good_outcome(patients: list, protocol: str) -> np.ndarray:
    """The label the experiment derives from the manifest outcome (not the generator's own field)."""
    if protocol == "ianr":
        return np.array([p.ianr_6m >= 37 for p in patients], dtype=int)
    change = np.array([p.uems_1y - p.uems_admission for p in patients])
    development = np.array([p.cohort == "development" for p in patients])
    return (change > change[development].mean()).astype(int)


def test_protocol_cohort_validates_and_has_the_protocol_layout(protocol_root):
    protocol, root = protocol_root
    cohort = load_cohort(root / "cohort.yaml")
    assert [i for i in cohort.issues if i.severity == "error"] == [] and len(cohort.patients) == 6
    manifest = yaml.safe_load((root / "cohort.yaml").read_text(encoding="utf-8"))
    assert manifest["name"] == f"synthetic_sci_{protocol}" and manifest["sequences"] == PROTOCOL_SEQUENCES[protocol]
    assert manifest["centers"] == ["center_A", "center_B", "center_C"]
    assert manifest["outcomes"] == {PROTOCOL_OUTCOME[protocol]: {"type": "continuous"}}
    table, _ = table_and_truth(root)
    assert table.columns == synthetic.sci_columns(protocol) and "good_outcome" not in table.columns
    masks = {c for c in table.columns if c.startswith("mask__") and not c.endswith("__rater2")}
    if protocol == "ianr":
        assert manifest["rois"] == ["lesion", "cord", "dl_rect"]
        assert set(manifest["clinical"]) == {
            "age",
            "sex",
            "smoking",
            "drinking",
            "hypertension",
            "diabetes",
            "cardiovascular_disease",
            "brain_injury",
            "injury_site",
            "treatment",
            "asia_grade",
        }
        assert manifest["clinical"]["injury_site"] == {"type": "categorical", "levels": ["C1-C4", "C5-C7"]}
        expected = {f"mask__{s}__lesion" for s in PROTOCOL_SEQUENCES[protocol]}
        expected |= {"mask__sag_T1__cord", "mask__sag_T2__cord", "mask__sag_T2__dl_rect"}
    else:
        assert manifest["rois"] == ["lesion", "cord"]
        assert set(manifest["clinical"]) == {
            "age",
            "sex",
            "diabetes",
            "hypertension",
            "smoking",
            "treatment",
            "asia_grade",
            "uems_admission",
        }
        expected = {"mask__sag_T2__lesion", "mask__sag_T2__cord"}
    assert masks == expected
    for record in cohort.patients.values():
        assert set(record.images) == set(PROTOCOL_SEQUENCES[protocol])
        assert {(m.sequence, m.roi) for m in record.masks if m.segmentation == "primary"} == {
            tuple(c.split("__")[1:]) for c in expected
        }
        assert all(cohort.resolve(p).is_file() for p in [*record.images.values(), *(m.path for m in record.masks)])
    assert table["mask__sag_T2__lesion__rater2"].is_not_null().sum() == round(0.5 * PROTOCOL_DEVELOPMENT)


def test_protocol_images_are_readable_and_lesion_lies_in_cord(protocol_root):
    protocol, root = protocol_root
    table, _ = table_and_truth(root)
    for row in table.iter_rows(named=True):
        for sequence in PROTOCOL_SEQUENCES[protocol]:
            image = read(root / row[f"image__{sequence}"])
            lesion_image = read(root / row[f"mask__{sequence}__lesion"])
            assert image.GetPixelID() == sitk.sitkInt16 and geometry(image) == geometry(lesion_image)
            assert sitk.GetArrayFromImage(lesion_image).sum() > 0
        for sequence in [s for s in PROTOCOL_SEQUENCES[protocol] if s.startswith("sag_")]:
            lesion = voxels(root / row[f"mask__{sequence}__lesion"]) == 1
            cord = voxels(root / row[f"mask__{sequence}__cord"]) == 1
            assert np.all(cord[lesion]), f"{row['patient_id']} {sequence}: lesion outside cord"
            t2 = voxels(root / row["image__sag_T2"])
            assert t2[lesion].mean() > t2[cord & ~lesion].mean()
    if protocol == "upper_limb":
        assert not list((root / "images").rglob("sag_T1*"))


def test_ianr_axial_and_coronal_planes_show_the_sagittal_lesion(protocol_cohort):
    root = protocol_cohort("ianr")
    table, _ = table_and_truth(root)
    for row in table.iter_rows(named=True):
        sagittal = read(root / row["image__sag_T2"]).GetSpacing()
        axial, coronal = (read(root / row[f"image__{plane}_T2"]).GetSpacing() for plane in ("ax", "cor"))
        assert axial[2] == sagittal[0] > axial[0] == axial[1]  # thick slices along the cranio-caudal axis
        assert coronal[1] == sagittal[0] > coronal[0] == coronal[2]  # thick slices along the AP axis
        sagittal_centroid = physical_centroid(root / row["mask__sag_T2__lesion"])
        for sequence in ("ax_T1", "ax_T2", "cor_T1", "cor_T2"):
            centroid = physical_centroid(root / row[f"mask__{sequence}__lesion"])
            assert np.abs(centroid - sagittal_centroid).max() < 2.5, f"{row['patient_id']} {sequence}"


def test_ianr_dl_rect_is_a_box_around_the_injury_level(protocol_cohort):
    root = protocol_cohort("ianr")
    table, _ = table_and_truth(root)
    for row in table.iter_rows(named=True):
        rect_image = read(root / row["mask__sag_T2__dl_rect"])
        assert geometry(rect_image) == geometry(read(root / row["image__sag_T2"]))
        rect = sitk.GetArrayFromImage(rect_image) == 1
        lesion = voxels(root / row["mask__sag_T2__lesion"]) == 1
        cord = voxels(root / row["mask__sag_T2__cord"]) == 1
        assert np.all(rect[lesion]) and rect.sum() > lesion.sum()
        box = tuple(
            slice(
                int(np.flatnonzero(rect.any(axis=tuple(a for a in range(3) if a != k)))[0]),
                int(np.flatnonzero(rect.any(axis=tuple(a for a in range(3) if a != k)))[-1]) + 1,
            )
            for k in range(3)
        )
        assert rect[box].all()  # box-shaped
        lesion_rows = np.flatnonzero(lesion.any(axis=(1, 2)))
        spacing_z = rect_image.GetSpacing()[2]
        assert box[0].start < lesion_rows[0] and box[0].stop > lesion_rows[-1] + 1  # a few mm beyond the lesion
        assert (lesion_rows[0] - box[0].start) * spacing_z <= synthetic.DL_RECT_MARGIN_MM + spacing_z
        cord_at_level = cord[box[0]]
        assert np.array_equal(rect.any(axis=(0, 1)), cord_at_level.any(axis=(0, 1)))  # the cord's LR extent
        cord_y = np.flatnonzero(cord_at_level.any(axis=(0, 2)))
        assert box[1].start < cord_y[0] and box[1].stop > cord_y[-1] + 1  # canal wider than the cord in AP


def test_protocol_prospective_outcomes_are_in_followup(protocol_root):
    protocol, root = protocol_root
    outcome = PROTOCOL_OUTCOME[protocol]
    table, truth = table_and_truth(root)
    prospective = table.filter(pl.col("cohort") == "prospective")
    development = table.filter(pl.col("cohort") == "development")
    assert prospective.height == PROTOCOL_PROSPECTIVE and prospective[outcome].is_null().all()
    assert development[outcome].is_not_null().all() and development["outcome_date"].is_not_null().all()
    assert all(0 <= int(v) <= 50 for v in development[outcome])
    followup = pl.read_csv(root / "followup" / "outcomes.csv")
    assert followup.columns == ["patient_id", "outcome", "value", "outcome_date"]
    assert sorted(followup["patient_id"]) == sorted(prospective["patient_id"]) and set(followup["outcome"]) == {outcome}
    expected = dict(zip(truth["patient_id"], truth[outcome]))
    assert all(expected[pid] == value for pid, value in zip(followup["patient_id"], followup["value"]))
    if protocol == "ianr":
        assert (truth["good_outcome"] == (truth["ianr_6m"] >= 37).cast(pl.Int64)).all()
    else:
        change = truth["uems_1y"] - truth["uems_admission"]
        assert (truth["uems_change"] == change).all()
        threshold = change.filter(truth["cohort"] == "development").mean()
        assert (truth["good_outcome"] == (change > threshold).cast(pl.Int64)).all()
        assert (table["uems_admission"].cast(pl.Int64).is_between(0, 50)).all()


@pytest.mark.parametrize("protocol", ["ianr", "upper_limb"])
def test_protocol_outcome_has_both_classes_and_follows_the_planted_logit(protocol):
    small = synthetic.sample_sci_patients(60, 0, seed=SEED, protocol=protocol)
    assert set(derived_good_outcome(small, protocol)) == {0, 1}
    patients = synthetic.sample_sci_patients(300, 0, seed=21, protocol=protocol)
    label = derived_good_outcome(patients, protocol)
    assert [p.good_outcome for p in patients] == label.tolist()
    assert 0.3 < label.mean() < 0.7
    assert auc(np.array([p.true_logit for p in patients]), label) > 0.7
    assert auc(np.array([p.lesion_length_mm for p in patients]), label) < 0.45  # longer lesion, worse outcome
    if protocol == "ianr":
        scores = np.array([p.ianr_6m for p in patients])
        assert scores.min() >= 0 and scores.max() <= 50 and len(set(scores)) > 15
        for name in ("drinking", "cardiovascular_disease", "brain_injury"):
            assert 0.03 < np.mean([getattr(p, name) for p in patients]) < 0.5
        assert 0.2 < np.mean([p.injury_site == "C1-C4" for p in patients]) < 0.5
    else:
        one_year, admission = np.array([p.uems_1y for p in patients]), np.array([p.uems_admission for p in patients])
        assert one_year.min() >= 0 and one_year.max() <= 50 and admission.min() >= 0 and admission.max() <= 50
        assert np.corrcoef(one_year - admission, [p.true_logit for p in patients])[0, 1] > 0.4


def test_protocols_share_the_core_patients_and_demo_is_unchanged():
    demo = synthetic.sample_sci_patients(12, 3, seed=SEED)
    assert synthetic.sci_columns("demo") == synthetic.SCI_COLUMNS
    assert synthetic.sci_manifest()["name"] == "synthetic_sci"
    for protocol in ("ianr", "upper_limb"):
        other = synthetic.sample_sci_patients(12, 3, seed=SEED, protocol=protocol)
        assert [p.patient_id for p in other] == [p.patient_id for p in demo]
        for a, b in zip(demo, other):
            assert (a.age, a.asia_grade, a.lesion_length_mm, a.treatment, a.has_second_rater) == (
                b.age,
                b.asia_grade,
                b.lesion_length_mm,
                b.treatment,
                b.has_second_rater,
            )
    assert all(p.ianr_6m is None and p.uems_1y is None and p.protocol == "demo" for p in demo)


def test_protocol_same_seed_gives_identical_files(protocol_root, tmp_path):
    protocol, root = protocol_root
    write_protocol(tmp_path, protocol)
    for name in ("patients.csv", "truth.csv", "followup/outcomes.csv", "cohort.yaml"):
        assert (root / name).read_text(encoding="utf-8") == (tmp_path / name).read_text(encoding="utf-8")
    images = sorted(p.relative_to(root) for p in (root / "images").rglob("*.nii.gz"))
    assert images == sorted(p.relative_to(tmp_path) for p in (tmp_path / "images").rglob("*.nii.gz"))
    for relative in images:
        assert np.array_equal(voxels(root / relative), voxels(tmp_path / relative))


def test_unknown_protocol_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        synthetic.write_sci_cohort(tmp_path, 2, 0, protocol="lumbar")
    assert not (tmp_path / "images").exists()
