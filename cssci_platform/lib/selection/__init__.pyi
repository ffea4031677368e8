# The package's names, imported from their module on first use (lazy_loader.attach_stub reads this file; type
# checkers read it instead of __init__.py).
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
