"""Experiments: the feature matrix, the studies' signatures, leakage-safe pipelines and their training."""
