"""Our own exception types. Errors carry the offending file and the reason, so a batch can
report them and move on."""

from __future__ import annotations


class SpecClipError(Exception):
    """Base class for every error this project raises on purpose."""


class SpectrumReadError(SpecClipError):
    """A file (or one row of it) could not be turned into a usable spectrum.

    Parameters
    ----------
    path : str
        The file, as the user named it.
    reason : str
        Why it was refused, in words a user can act on.
    """

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnknownFormatError(SpectrumReadError):
    """No registered reader recognises the file."""


class BundleError(SpecClipError):
    """A model bundle is missing parts or its config and weights disagree."""


class StoreError(SpecClipError):
    """The vector store refused an operation or went away."""


class NotFoundError(SpecClipError):
    """A lookup (obsid, source id, point id) matched nothing."""
