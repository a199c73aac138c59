"""mlx-rvc: Retrieval-based Voice Conversion inference on MLX.

Importing the package first activates a fast BLAS for MLX on Linux (see :mod:`mlx_rvc.backend`),
so import ``mlx_rvc`` before ``mlx.core``.
"""

from . import backend  # noqa: F401  (must run before anything imports mlx.core)
from .importer import import_model
from .options import ConversionOptions
from .pipeline import VoiceConverter
from .store import load_voice

__version__ = "0.1.0"
__all__ = ["ConversionOptions", "VoiceConverter", "import_model", "load_voice", "__version__"]
