"""Clinical statistics: Table 1 and logistic regression for independent risk factors.

- `group_tests`: how groups are compared (Shapiro-Wilk, t-test/ANOVA or Mann-Whitney/Kruskal-Wallis, chi-square or
  Fisher(-Freeman-Halton)) and how p-values are written;
- `table_one`: Table 1, one column per group, with its HTML and markdown renderings;
- `logistic`: univariable and multivariable logistic regression (odds ratios, Wald CIs and p-values);
- `risk_factors`: univariable screening, then one multivariable model of the entered predictors.
"""

from cssci_platform.lib.clinical.group_tests import (
    EXACT_TABLE_LIMIT,
    MONTE_CARLO_SEED,
    MONTE_CARLO_TABLES,
    compare_categorical,
    compare_continuous,
    fisher_exact_r_by_2,
    format_p,
    is_normal,
    mean_sd,
    median_iqr,
    ordered_levels,
)
from cssci_platform.lib.clinical.logistic import (
    Design,
    LogisticFit,
    LogisticFitError,
    binary_outcome,
    design_matrix,
    multivariable_logistic,
    univariable_logistic,
)
from cssci_platform.lib.clinical.risk_factors import RiskFactorAnalysis, independent_risk_factors
from cssci_platform.lib.clinical.table_one import (
    TABLE_COLUMNS,
    table_one,
    table_one_display,
    table_one_html,
    table_one_markdown,
)

__all__ = [
    "EXACT_TABLE_LIMIT",
    "MONTE_CARLO_SEED",
    "MONTE_CARLO_TABLES",
    "TABLE_COLUMNS",
    "Design",
    "LogisticFit",
    "LogisticFitError",
    "RiskFactorAnalysis",
    "binary_outcome",
    "compare_categorical",
    "compare_continuous",
    "design_matrix",
    "fisher_exact_r_by_2",
    "format_p",
    "independent_risk_factors",
    "is_normal",
    "mean_sd",
    "median_iqr",
    "multivariable_logistic",
    "ordered_levels",
    "table_one",
    "table_one_display",
    "table_one_html",
    "table_one_markdown",
    "univariable_logistic",
]
