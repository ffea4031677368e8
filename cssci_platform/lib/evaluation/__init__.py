"""Model evaluation statistics. Scores are oriented so that higher means the positive class (y = 1).

- `performance.py`: point AUC, Youden threshold, threshold metrics, multiclass AUC/top-k (used by training).
- `delong.py`: DeLong AUC variance/CI and paired/unpaired tests (fast midrank algorithm, pROC conventions), and
  `auc_interval`, the boundary-respecting interval of report tables (logit-DeLong; Newcombe's score at AUC 0/1).
- `bootstrap.py`: stratified percentile bootstrap CIs (1000 seeded replicates by default).
- `proportions.py`: Wilson CIs for accuracy, sensitivity, specificity, PPV, NPV.
- `calibration.py`: calibration curve, calibration-in-the-large, intercept/slope, Brier, Hosmer-Lemeshow.
- `decision_curve.py`: net benefit (model, treat-all, treat-none), dcurves conventions.
- `multiclass.py`: top-k accuracy, per-class precision/recall/F1, one-vs-rest and macro AUC with CIs.
Each module's docstring states the exact definitions it uses.
"""

from cssci_platform.lib.evaluation.bootstrap import (
    DEFAULT_REPLICATES,
    DEFAULT_SEED,
    BootstrapCI,
    bootstrap_auc_ci,
    bootstrap_ci,
    bootstrap_threshold_metrics,
    percentile_interval,
    replicate_indices,
)
from cssci_platform.lib.evaluation.calibration import (
    CalibrationCurve,
    HosmerLemeshow,
    LogisticRecalibration,
    brier_score,
    calibration_curve,
    calibration_in_the_large,
    calibration_summary,
    hosmer_lemeshow,
    hosmer_lemeshow_groups,
    logistic_recalibration,
    scaled_brier_score,
)
from cssci_platform.lib.evaluation.decision_curve import DEFAULT_THRESHOLDS, DecisionCurve, net_benefit
from cssci_platform.lib.evaluation.delong import (
    AucComparison,
    AucInterval,
    DeLongCI,
    auc_interval,
    delong_ci,
    delong_placements,
    delong_roc_test,
    delong_unpaired_test,
)
from cssci_platform.lib.evaluation.multiclass import (
    MulticlassEvaluation,
    multiclass_evaluation,
    one_vs_rest_auc,
    precision_recall_f1,
    top_k_accuracy,
)
from cssci_platform.lib.evaluation.performance import (
    THRESHOLD_METRICS,
    ConfusionCounts,
    binary_auc,
    confusion_counts,
    multiclass_metrics,
    threshold_metrics,
    youden_threshold,
)
from cssci_platform.lib.evaluation.proportions import (
    ProportionCI,
    proportion_ci,
    threshold_metrics_with_ci,
    wilson_interval,
)

__all__ = [
    "DEFAULT_REPLICATES",
    "DEFAULT_SEED",
    "DEFAULT_THRESHOLDS",
    "THRESHOLD_METRICS",
    "AucComparison",
    "AucInterval",
    "BootstrapCI",
    "CalibrationCurve",
    "ConfusionCounts",
    "DeLongCI",
    "DecisionCurve",
    "HosmerLemeshow",
    "LogisticRecalibration",
    "MulticlassEvaluation",
    "ProportionCI",
    "auc_interval",
    "binary_auc",
    "bootstrap_auc_ci",
    "bootstrap_ci",
    "bootstrap_threshold_metrics",
    "brier_score",
    "calibration_curve",
    "calibration_in_the_large",
    "calibration_summary",
    "confusion_counts",
    "delong_ci",
    "delong_placements",
    "delong_roc_test",
    "delong_unpaired_test",
    "hosmer_lemeshow",
    "hosmer_lemeshow_groups",
    "logistic_recalibration",
    "multiclass_evaluation",
    "multiclass_metrics",
    "net_benefit",
    "one_vs_rest_auc",
    "percentile_interval",
    "precision_recall_f1",
    "proportion_ci",
    "replicate_indices",
    "scaled_brier_score",
    "threshold_metrics",
    "threshold_metrics_with_ci",
    "top_k_accuracy",
    "wilson_interval",
    "youden_threshold",
]
