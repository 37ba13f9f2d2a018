"""Errors raised for bad or missing dataset files.

Every message names the offending file and says what to do, because a dataset problem found
hours into preparation (or, worse, a silently mislabelled example) costs far more than a loud stop.
"""


class DataError(ValueError):
    """A dataset file is unreadable or inconsistent (truncated image, mask size, bad label)."""


class DatasetNotFoundError(FileNotFoundError):
    """The raw dataset is neither in ``manual_dir`` nor downloadable."""
