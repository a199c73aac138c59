"""Torch-free, non-executing reading of PyTorch checkpoints and recognition of what they hold."""

from .reader import InertObject, read_checkpoint

__all__ = ["InertObject", "read_checkpoint"]
