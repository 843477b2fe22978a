"""The exceptions of swinjax, in one leaf module every layer may import (it imports nothing).

:class:`UserError` is the one base class of everything a user can fix: a bad config value, a
missing dataset or file, a checkpoint that does not fit. Its message names the problem and the
fix. The command-line programs turn a :class:`UserError` into that one line and exit status 2;
every other exception (a bug, an error inside JAX or TensorFlow) keeps its traceback. Each class
also derives from the built-in exception it refines (``ConfigError`` is a ``ValueError``), so
code that catches the built-in keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and how. Programs: exit status 2."""


class ConfigError(UserError, ValueError):
    """A config value (or a flag, or an argument built from one) that cannot run."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named (weights, a checkpoint, a config file) that does not exist."""


class UnknownDatasetError(UserError, ValueError):
    """``config.dataset`` names neither a tfds dataset, an image folder nor ``synthetic``."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is not prepared in the data directory and cannot be downloaded here."""


class InvalidSplitError(UserError, ValueError):
    """A split string that does not parse or names a split the dataset does not have."""


class BadImageError(UserError, ValueError):
    """Image files that cannot be decoded (``config.bad_images='fail'``, or a file that went bad
    while a split streamed): names the first few files, their reasons and the count."""


class CheckpointError(UserError, RuntimeError):
    """No usable checkpoint where one was expected, or a save that failed; the message says
    where and why."""


class CheckpointMismatchError(UserError, ValueError):
    """A state dict (pretrained weights) that does not fit the model: names the offending keys."""


class DownloadError(UserError, OSError):
    """A file that is not cached and cannot be downloaded here; names the fix."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that this source needs is not installed; the message has the fix."""


class TrainingDivergedError(FloatingPointError):
    """A NaN or infinite training metric; the message names the step. Programs: exit status 3."""


class SomeInputsFailedError(Exception):
    """Some of the inputs (image files) could not be read; the output for the others was written.
    The message counts and names them. Programs: exit status 4."""
