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

The names below are imported from their module on first use (`__init__.pyi` lists them): the study config imports
`settings.py`, and every run's definitions with it, without importing scikit-learn, SciPy or pandas.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
