"""Errors a user can fix, carrying the file and line they point at.

Every stage raises these for bad input; the CLI turns them into one `error: file:line: message` line
and exit code 1. Programming errors stay `ValueError`/`TypeError` so they keep their traceback.
"""

from __future__ import annotations

from pathlib import Path


class BilstmNlpError(Exception):
    """Anything the user can fix: bad input, a bad model file, a bad config.

    Args:
        message: what was expected and what was found.
        path: the file the problem is in, if any.
        line: 1-based line number in `path`, if known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        # Compiler style, so editors can jump to the spot.
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"

    def __reduce__(self):
        # Keep path and line when the error crosses a process boundary (annotate --workers).
        return (type(self), (self.message, self.path, self.line))


class InputFormatError(BilstmNlpError):
    """A data file does not follow its format (columns, tags, encoding, brackets...)."""


class ModelFileError(BilstmNlpError):
    """A model directory or file is missing, corrupt, incompatible or unsafe."""


class ConfigError(BilstmNlpError):
    """A configuration value is unknown, of the wrong type, or inconsistent."""


class ResumeError(BilstmNlpError):
    """A resumed run differs from the interrupted one (model, options or inputs), or its output
    does not match the progress file."""


class OutputError(BilstmNlpError):
    """An output could not be written (disk full, no permission, I/O error)."""


class OutputInUse(OutputError):
    """Another run is writing the output, or the same file under another name."""


RUNTIME_ONLY = "the bilstm-nlp-runtime distribution runs ONNX model folders only"
FULL_INSTALL = (
    "install the full bilstm-nlp in another environment (from a checkout: pip install "
    "torch==2.13.0 && pip install .); the two provide the same package, so not both in one"
)


def require_torch(what: str, remedy: str | None = None) -> None:
    """Raise a `ConfigError` saying what to install unless torch imports.

    Args:
        what: what needs torch, as the start of a sentence ("training").
        remedy: another way out, appended to the message.
    Raises:
        ConfigError: torch is not installed (the slim runtime distribution has none).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{what} needs torch, which is not installed ({RUNTIME_ONLY}): "
            f"{FULL_INSTALL}{f', {remedy}' if remedy else ''}"
        ) from None
