"""Typed errors. Each carries one line that names the problem, for the CLI and the web app."""

from __future__ import annotations


class MlxRvcError(Exception):
    """Base of every error this package raises on purpose (bad input, not bugs)."""


class CheckpointError(MlxRvcError, ValueError):
    """A checkpoint file could not be read safely or is not what was expected."""


class NotACheckpointError(CheckpointError):
    """The file is not a PyTorch checkpoint (neither zip nor legacy pickle)."""


class TruncatedCheckpointError(CheckpointError):
    """The file ends early or its parts disagree about their sizes."""


class ForbiddenGlobalError(CheckpointError):
    """The pickle asks for a Python object outside the allow-list (it could run code)."""


class TrainingCheckpointError(CheckpointError):
    """A training checkpoint (``G_*.pth`` with optimizer state) instead of an inference model."""


class UnknownModelError(CheckpointError):
    """The checkpoint is readable but is no model kind this package knows."""


class ModelConfigError(CheckpointError):
    """A model's configuration disagrees with its weights, or a weight is missing or mis-shaped."""


class FixtureError(MlxRvcError, ValueError):
    """A parity fixture is missing, malformed, or names a model that cannot be found."""
