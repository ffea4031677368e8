"""The feature-selection chain as scikit-learn transformers, each usable alone or inside a `Pipeline`.

Leakage safety (DESIGN.md section 2): every step learns only from the rows it is fitted on, so inside a
Pipeline fitted on training rows (or CV training folds) no test, validation or prospective label or feature
influences the selection. The ICC table is the one input computed outside the pipeline: from repeat
segmentations, without labels (`icc`), then passed to `ICCFilter`.

Typical radiomics chain (upper-limb SCI protocol)::

    Pipeline([
        ("icc", ICCFilter(icc(repeat_frames, kind="ICC3"), threshold=0.75, missing="keep")),
        ("zscore", ZScoreScaler()),
        ("rank_test", RankTestFilter(alpha=0.05)),
        ("spearman", SpearmanRedundancyFilter(threshold=0.9)),
        ("mrmr", MRMRSelector(k=20)),
        ("lasso", LassoSelector(cv=10, random_state=seed)),
        ("model", classifier),
    ]).set_output(transform="pandas")

Deep features go through `ChannelPCA(32)` first. Every fitted step has ``report_`` (a `SelectionReport`);
`pipeline_reports` collects them from a fitted Pipeline for logging.
"""

from ._base import EmptySelectionWarning, ReportingSelector, SelectionReport, pipeline_reports, single_valued_columns
from .channel_pca import ChannelPCA, deep_channel_of
from .correlation import SpearmanRedundancyFilter, greedy_redundancy_drop, spearman_matrix
from .lasso import LassoSelector, choose_penalty
from .mrmr_ranking import MRMRSelector, mrmr_order
from .reliability import ICCFilter, icc, ratings_from_long, reliability_table
from .scaling import ZScoreScaler
from .univariate import RankTestFilter, kruskal_pvalues, mann_whitney_pvalues

__all__ = [
    "ChannelPCA",
    "EmptySelectionWarning",
    "ICCFilter",
    "LassoSelector",
    "MRMRSelector",
    "RankTestFilter",
    "ReportingSelector",
    "SelectionReport",
    "SpearmanRedundancyFilter",
    "ZScoreScaler",
    "choose_penalty",
    "deep_channel_of",
    "greedy_redundancy_drop",
    "icc",
    "kruskal_pvalues",
    "mann_whitney_pvalues",
    "mrmr_order",
    "pipeline_reports",
    "ratings_from_long",
    "reliability_table",
    "single_valued_columns",
    "spearman_matrix",
]
