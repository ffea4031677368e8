"""The domain error of the deep-learning library: what went wrong and how to fix it."""

from __future__ import annotations


class DeepLearningError(Exception):
    """A bad input or missing resource, named by ``code``; ``fix`` says what the user should do.

    The Dagster wiring turns these into ``QcIssue`` rows (patient problems) or run failures (missing
    weights); ``code`` is stable and meant for filtering, ``message`` and ``fix`` are for people.
    """

    def __init__(self, code: str, message: str, fix: str) -> None:
        self.code, self.message, self.fix = code, message, fix
        super().__init__(f"[{code}] {message} Fix: {fix}")


class RoiSliceError(DeepLearningError):
    """The ROI slice of one patient and channel cannot be built (empty ROI, crop off the slice, ...)."""


class BackboneWeightsError(DeepLearningError):
    """Requested weights are missing, unreadable, or do not fit the architecture."""
