"""Several partitions of one asset in one run (an op job), each materialized by the function the asset itself calls
and recorded as the asset's materialization for that partition: the command line's way to spare a run's start-up
(~4 s of process start and imports, plus torch or scoring imports) per patient or center. One partition that fails
does not stop the others; the run then fails naming each with its root cause."""

import traceback
from collections.abc import Callable, Iterator

import dagster as dg

from cssci_platform.lib.failures import describe


def root_cause(error: BaseException) -> str:
    if isinstance(error, dg.Failure) and error.description:
        return error.description
    return describe(error)  # explained when it is a storage problem (a full disk, a file where a folder goes)


def materialize_each(context: dg.OpExecutionContext, asset_key: dg.AssetKey, partitions: list[str],
                     materialize: Callable[[str], dict], noun: str) -> Iterator[dg.AssetMaterialization]:
    """Materialize `asset_key` for each partition by `materialize(partition) -> metadata`, yielding each
    materialization as it ends (so the instance shows it at once); raises `dg.Failure` at the end naming every
    partition that raised, with its root cause ('2 of 9 {noun} failed: P1: ...; P2: ...')."""
    failed: list[str] = []
    for partition in partitions:
        try:
            metadata = materialize(partition)
        except Exception as error:  # noqa: BLE001 - one partition's failure must not stop the batch
            failed.append(f"{partition}: {root_cause(error)}")
            context.log.error(f"{asset_key.to_user_string()} of {partition} failed\n{traceback.format_exc()}")
            continue
        yield dg.AssetMaterialization(asset_key=asset_key, partition=partition, metadata=metadata)
    if failed:
        raise dg.Failure(f"{len(failed)} of {len(partitions)} {noun} failed: " + "; ".join(failed))
