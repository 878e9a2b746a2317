"""The project's own exception types.

Every user mistake (a missing file, a bad column, an unknown dataset name) raises a
subclass of :class:`ReclensError` whose message is one line naming the file and, where it
applies, the line or column. The CLI prints that message without a traceback.
"""

from __future__ import annotations


class ReclensError(Exception):
    """Base class of every error RecLens reports to a user as a one-line message."""


class DataError(ReclensError):
    """A dataset could not be found, read, parsed or prepared."""


class DownloadError(DataError):
    """A dataset download failed, was truncated or did not match its checksum."""
