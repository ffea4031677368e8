"""Centers a fitted ComBat never saw: the policies for their rows and the record of what each transform did."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, get_args

from cssci_platform.lib.harmonization.estimation import BatchEffect

UnseenCenterPolicy = Literal["none", "refit_site", "reference", "error"]
UNSEEN_CENTER_POLICIES: tuple[str, ...] = get_args(UnseenCenterPolicy)


@dataclass(frozen=True)
class UnseenCenterEvent:
    """One transform call meeting a center unseen at fit, and what was done with its rows."""

    center: Hashable
    n_rows: int
    policy: str
    action: str
    batch_effect: BatchEffect | None = None  # the estimates applied, when there were any
