"""The errors of `jaxseg.runtimes`: each message names the runtime, package or operation."""

from __future__ import annotations


class ConversionError(ValueError):
    """A converter refused a network, or its result failed the converter's own checks.

    Attributes:
      refused: True when the converter lacks an operation of the network (named in the
        message): another runtime or format may still take it.
    """

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class MissingPackageError(ImportError):
    """A runtime needs a package of an optional extra that is not installed."""

    def __init__(self, what: str, extra: str, missing: str):
        super().__init__(
            f"{what} needs the package {missing!r}, which is not installed: "
            f"pip install 'jaxseg[{extra}]'"
        )
