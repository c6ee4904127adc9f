"""The one error type analysis functions raise for bad input."""


class AnalysisError(ValueError):
    """Bad analysis input, worded for the user: what was wrong and what to do instead.

    >>> raise AnalysisError("No samples are selected: pick at least one class.")
    Traceback (most recent call last):
    ...
    kd_core.analysis.errors.AnalysisError: No samples are selected: pick at least one class.
    """
