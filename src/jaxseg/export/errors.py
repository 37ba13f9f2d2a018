"""The errors of `jaxseg.export`: each message names the file, option or operation at fault."""

from __future__ import annotations


class ExportError(ValueError):
    """The model cannot be exported as asked (an option, a size, an operation the format
    lacks, an output that exists): nothing was written. The command exits with status 2."""


class ConversionError(ExportError):
    """A converter refused the model, or the converted file does not compute the model's
    outputs: nothing was written. The command exits with status 1."""


class ExportFileError(ValueError):
    """An export file or folder cannot be read back: the message names it and what to do."""


class MissingExtraError(ExportError):
    """A format needs packages of an optional extra that are not installed."""

    def __init__(self, fmt: str, extra: str, missing: str):
        super().__init__(
            f"--format {fmt} needs the package {missing!r}, which is not installed: "
            f"pip install 'jaxseg[{extra}]'"
        )
