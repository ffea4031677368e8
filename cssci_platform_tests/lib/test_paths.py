"""resolve_within / is_within: every link resolved; a path whose real location leaves its roots is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssci_platform.lib.paths import PathEscapeError, is_within, resolve_within


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(root, outside, archive): a data root, a folder beside it, and a read-only archive beside it."""
    root, outside, archive = tmp_path / "root", tmp_path / "outside", tmp_path / "archive"
    for folder in (root / "P1", outside, archive / "P1"):
        folder.mkdir(parents=True)
    (root / "P1" / "t2.nii.gz").write_bytes(b"inside")
    (outside / "secret.nii.gz").write_bytes(b"outside")
    (archive / "P1" / "t2.nii.gz").write_bytes(b"archived")
    return root, outside, archive


def test_a_plain_file_under_the_root_resolves_to_itself(layout: tuple[Path, Path, Path]) -> None:
    root, _, _ = layout
    assert resolve_within(Path("P1/t2.nii.gz"), root) == (root / "P1" / "t2.nii.gz").resolve()


def test_a_link_inside_the_root_to_a_file_inside_the_root_is_accepted(layout: tuple[Path, Path, Path]) -> None:
    root, _, _ = layout
    (root / "P1" / "alias.nii.gz").symlink_to(root / "P1" / "t2.nii.gz")
    assert resolve_within(Path("P1/alias.nii.gz"), root) == (root / "P1" / "t2.nii.gz").resolve()


def test_a_file_link_leaving_the_root_is_refused_naming_the_link_and_its_target(
    layout: tuple[Path, Path, Path],
) -> None:
    root, outside, _ = layout
    (root / "P1" / "t1.nii.gz").symlink_to(outside / "secret.nii.gz")
    with pytest.raises(PathEscapeError) as caught:
        resolve_within(Path("P1/t1.nii.gz"), root)
    assert caught.value.link == root / "P1" / "t1.nii.gz"
    assert caught.value.target == (outside / "secret.nii.gz").resolve()
    message = str(caught.value)
    assert str(root / "P1" / "t1.nii.gz") in message and "secret.nii.gz" in message and "archive_roots" in message


def test_a_folder_link_leaving_the_root_is_named_rather_than_the_file_below_it(layout: tuple[Path, Path, Path]) -> None:
    root, outside, _ = layout
    (root / "P2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError) as caught:
        resolve_within(Path("P2/secret.nii.gz"), root)
    assert caught.value.link == root / "P2"


def test_a_relative_link_climbing_out_of_the_root_is_refused(layout: tuple[Path, Path, Path]) -> None:
    root, _, _ = layout
    (root / "P1" / "up.nii.gz").symlink_to(Path("../../outside/secret.nii.gz"))
    with pytest.raises(PathEscapeError):
        resolve_within(Path("P1/up.nii.gz"), root)


def test_a_link_hidden_behind_dot_dot_is_still_named(layout: tuple[Path, Path, Path]) -> None:
    root, outside, _ = layout
    (outside / "deeper").mkdir()
    (root / "hop").symlink_to(outside / "deeper", target_is_directory=True)
    with pytest.raises(PathEscapeError) as caught:
        resolve_within(Path("hop/../secret.nii.gz"), root)
    assert caught.value.link == root / "hop"


def test_a_chain_of_links_is_followed_to_its_end(layout: tuple[Path, Path, Path]) -> None:
    root, outside, _ = layout
    (root / "P1" / "last.nii.gz").symlink_to(outside / "secret.nii.gz")
    (root / "P1" / "first.nii.gz").symlink_to(root / "P1" / "last.nii.gz")
    with pytest.raises(PathEscapeError) as caught:
        resolve_within(Path("P1/first.nii.gz"), root)
    assert caught.value.link == root / "P1" / "first.nii.gz"


def test_a_link_into_a_declared_archive_root_is_accepted(layout: tuple[Path, Path, Path]) -> None:
    root, _, archive = layout
    (root / "P1" / "t1.nii.gz").symlink_to(archive / "P1" / "t2.nii.gz")
    resolved = resolve_within(Path("P1/t1.nii.gz"), root, allowed_roots=[archive])
    assert resolved == (archive / "P1" / "t2.nii.gz").resolve()


def test_an_archive_root_does_not_open_its_neighbours(layout: tuple[Path, Path, Path]) -> None:
    root, outside, archive = layout
    (root / "P1" / "t1.nii.gz").symlink_to(outside / "secret.nii.gz")
    with pytest.raises(PathEscapeError):
        resolve_within(Path("P1/t1.nii.gz"), root, allowed_roots=[archive])


def test_an_absolute_path_outside_the_roots_is_refused_without_a_link(layout: tuple[Path, Path, Path]) -> None:
    root, outside, _ = layout
    with pytest.raises(PathEscapeError) as caught:
        resolve_within(outside / "secret.nii.gz", root)
    assert caught.value.link is None and "outside" in str(caught.value)


def test_a_root_reached_through_a_link_is_its_own_real_location(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, _, _ = layout
    (tmp_path / "linked_root").symlink_to(root, target_is_directory=True)
    assert resolve_within(Path("P1/t2.nii.gz"), tmp_path / "linked_root") == (root / "P1" / "t2.nii.gz").resolve()


def test_a_missing_file_under_the_root_resolves_for_the_caller_to_report(layout: tuple[Path, Path, Path]) -> None:
    root, _, _ = layout
    assert resolve_within(Path("P9/none.nii.gz"), root) == root.resolve() / "P9" / "none.nii.gz"


def test_is_within_tells_inside_from_outside_with_links_resolved(layout: tuple[Path, Path, Path]) -> None:
    root, outside, archive = layout
    (root / "escape").symlink_to(outside, target_is_directory=True)
    assert is_within(root / "P1" / "t2.nii.gz", [root])
    assert is_within(root, [root])
    assert not is_within(root / "escape" / "secret.nii.gz", [root])
    assert is_within(archive / "P1", [root, archive])
    assert not is_within(root.parent / "root_sibling", [root])
