"""Report building blocks: figures as PNG bytes (`figures`), the nomogram (`nomogram`), SHAP and model
explanations (`explain`). Everything draws on matplotlib `Figure` objects with the Agg canvas (no pyplot
state, no display needed), at fixed sizes and resolution."""
