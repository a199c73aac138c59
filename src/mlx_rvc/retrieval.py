"""Feature retrieval from a voice's training features (RVC ``.index`` files, read with faiss).

Each content-feature frame is replaced, to the degree ``index_rate``, by the average of its
k = 8 nearest training frames weighted by inverse squared distance, which pulls the timbre
towards the target speaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MlxRvcError

K_NEIGHBOURS = 8


class RetrievalIndexError(MlxRvcError, ValueError):
    """A retrieval index could not be read or does not fit the voice."""


@dataclass
class FeatureIndex:
    """A loaded index: the faiss searcher and every stored vector in id order."""

    index: object  # faiss.Index
    vectors: np.ndarray  # (ntotal, dim) float32
    path: Path

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, feats: np.ndarray, k: int = K_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """Squared L2 distances and ids of the k nearest stored vectors, (N, k) each."""
        return self.index.search(np.ascontiguousarray(feats, np.float32), k)


def load_index(path: str | Path, *, dim: int | None = None) -> FeatureIndex:
    """Read an RVC ``.index`` file (any faiss index type RVC training writes).

    Args:
        dim: the voice's feature width (256 for v1, 768 for v2); a mismatch is an error.

    Raises:
        FileNotFoundError, RetrievalIndexError (unreadable, empty, or of the wrong dimension).
    """
    import faiss

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file not found: {path}")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise RetrievalIndexError(f"{path.name}: not a readable faiss index ({first[:120]})") from exc
    if index.ntotal < K_NEIGHBOURS:
        raise RetrievalIndexError(f"{path.name}: holds {index.ntotal} vectors, retrieval needs at least {K_NEIGHBOURS}")
    if dim is not None and index.d != dim:
        raise RetrievalIndexError(
            f"{path.name}: index vectors are {index.d}-d but the voice uses {dim}-d features "
            f"({'v1' if index.d == 256 else 'v2' if index.d == 768 else 'another model'} index?)"
        )
    vectors = index.reconstruct_n(0, index.ntotal).astype(np.float32)
    return FeatureIndex(index, vectors, path)


def blend(feats: np.ndarray, index: FeatureIndex, rate: float) -> np.ndarray:
    """``rate · Σ w·neighbours + (1 − rate) · feats`` with w ∝ 1/distance², per frame.

    feats: (N, dim) float32. Returns float32 (N, dim). A frame that exactly equals a stored
    vector (distance 0) takes that vector, where the reference would produce NaN.
    """
    if rate <= 0:
        return feats
    score, ix = index.search(feats)
    with np.errstate(divide="ignore"):
        weight = np.square(1 / score)
    exact = ~np.isfinite(weight)
    if exact.any():  # zero distance: all weight on the exact matches
        weight = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float32), weight)
    weight /= weight.sum(axis=1, keepdims=True)
    retrieved = np.sum(index.vectors[ix] * weight[..., None], axis=1)
    return (retrieved * np.float32(rate) + np.float32(1 - rate) * feats).astype(np.float32)
