"""Errors a user can cause: the CLI prints them as one line, without a traceback."""


class PipelineError(Exception):
    """A problem with the user's input (config, files, URLs, weights) that stops the run or one camera."""


class ConfigError(PipelineError):
    """The config is malformed or invalid; the message names the dotted path."""


class SourceError(PipelineError):
    """A camera source cannot be opened or read; the message names the camera."""


class WeightsError(PipelineError):
    """A weights file is missing or unreadable; the message says how to supply it."""


class UnknownNameError(PipelineError, KeyError):
    """No registry holds the name asked for (detector, embedder, model, dataset format); the message lists
    the close matches. It is a KeyError too, as a failed lookup by name."""

    __str__ = PipelineError.__str__  # KeyError's would quote the message
