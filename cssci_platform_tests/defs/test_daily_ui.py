"""The daily UI in Dagster: groups that read in order, the QC montage on roi_slices, the prospective monitoring check
on validation_metrics and the cohort overview on cohort_manifest."""

import base64
import io
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from cssci_platform.definitions import defs
from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.features.assets import preprocessed_channels
from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
from cssci_platform.lib.qc_montage import DL_BOX_COLOUR, ROI_COLOURS
from cssci_platform.lib.qc_montage import FOLDER as MONTAGE_FOLDER
from cssci_platform_tests.defs.conftest import Platform


@pytest.fixture(scope="module")
def asset_graph():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CSSCI_WAREHOUSE", "CSSCI_MANIFEST", "CSSCI_IMAGE_STORE", "CSSCI_MLFLOW_URI"):
            patch.setenv(name, f"/nonexistent/{name.lower()}")
        yield defs().resolve_asset_graph()


def _group(graph, key: dg.AssetKey) -> str:
    return graph.get(key).group_name


def test_the_outcome_assets_have_their_own_group(asset_graph) -> None:
    groups = {key.to_user_string(): _group(asset_graph, key) for key in asset_graph.get_all_asset_keys()}
    assert groups["followup_outcomes"] == groups["study_outcome"] == "outcomes"
    assert {name for name, group in groups.items() if group == "outcomes"} == {"followup_outcomes", "study_outcome"}


def _group_parents(asset_graph) -> dict[str, set[str]]:
    """group -> the other groups it reads from."""
    parents: dict[str, set[str]] = {}
    for key in asset_graph.get_all_asset_keys():
        group = _group(asset_graph, key)
        upstream = {_group(asset_graph, parent) for parent in asset_graph.get(key).parent_keys}
        parents.setdefault(group, set()).update(upstream - {group})
    return parents


def _downstream(parents: dict[str, set[str]], group: str) -> set[str]:
    """Every group reading from `group`, directly or through others."""
    found, frontier = set(), {group}
    while frontier:
        frontier = {child for child, ups in parents.items() if ups & frontier} - found
        found |= frontier
    return found


def test_outcomes_and_prospective_read_in_one_direction(asset_graph) -> None:
    """outcomes -> modeling -> prospective, never back (it read prospective -> modeling -> prospective)."""
    parents = _group_parents(asset_graph)
    assert "outcomes" not in _downstream(parents, "outcomes")
    assert "prospective" not in _downstream(parents, "prospective")
    assert "modeling" in _downstream(parents, "outcomes") and "prospective" in _downstream(parents, "modeling")
    assert not _downstream(parents, "prospective") & {"outcomes", "modeling", "ingest", "features", "deep"}


@pytest.mark.xfail(strict=True, reason="patient_splits (group modeling, defs/splits/assets.py: not U1's file) feeds "
                   "fine_tuned_backbones (deep) while center_embeddings (deep) feeds feature_matrix (modeling): "
                   "deep <-> modeling until patient_splits gets its own group (e.g. 'outcomes' or 'splits')")
def test_the_groups_read_in_one_direction(asset_graph) -> None:
    """Between groups the graph is acyclic: no group is both upstream and downstream of another."""
    try:
        order = list(TopologicalSorter(_group_parents(asset_graph)).static_order())
    except CycleError as error:
        pytest.fail(f"groups depend on each other in a cycle: {error.args[1]}")
    assert order.index("outcomes") < order.index("modeling") < order.index("prospective")


# --- the QC montage on roi_slices ----------------------------------------------------------------------------------

def test_roi_slices_shows_the_patients_qc_montage_and_writes_it_to_the_image_store(platform: Platform) -> None:
    [key, *_] = platform.register()
    assert platform.materialize_manifest().success
    result = dg.materialize([cohort_manifest, patient_scans, preprocessed_channels, roi_slices],
                            selection=[patient_scans.key, preprocessed_channels.key, roi_slices.key], partition_key=key,
                            instance=platform.instance, resources=platform.resources)
    metadata = _metadata(platform.instance, roi_slices.key, key)
    markdown = metadata["qc_montage"].value
    assert markdown.startswith(f"![QC montage {key}](data:image/png;base64,")
    png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    assert 5_000 < len(png) < 150_000  # small enough for the UI to render inline
    written = Path(platform.resources["image_store"].root) / MONTAGE_FOLDER / f"{key}.png"
    assert written.read_bytes() == png and metadata["qc_montage_file"].value == str(written)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    for colour in (ROI_COLOURS["lesion"], ROI_COLOURS["cord"], DL_BOX_COLOUR):  # every contour is drawn
        assert np.all(image == colour, axis=-1).sum() > 20, colour
    assert result.success


def _metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None = None) -> dict:
    event = instance.get_latest_materialization_event(asset_key) if partition is None else \
        next(e for e in instance.fetch_materializations(asset_key, limit=50).records
             if e.asset_materialization and e.asset_materialization.partition == partition).event_log_entry
    assert event is not None and event.asset_materialization is not None
    return event.asset_materialization.metadata
