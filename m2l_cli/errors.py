"""Errors a user can cause: each carries a one-line message the CLI prints as is."""


class M2LError(Exception):
    """Base class for every error caused by input (files, options, weights)."""


class AudioError(M2LError):
    """An audio file could not be read or written."""


class ContainerError(M2LError):
    """A .m2l container is malformed, truncated or corrupt."""


class ModelError(M2LError):
    """Weights are missing, malformed, or do not match what is asked of them."""


class EvaluationError(M2LError):
    """Two recordings cannot be compared (channels, length, missing folder)."""


class Terminated(BaseException):
    """SIGTERM (or SIGHUP): unwinds like Ctrl-C, so every clean-up runs and no partial
    output is left, but is its own kind, so the command can say 'terminated'."""
