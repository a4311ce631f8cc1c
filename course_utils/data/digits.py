"""scikit-learn's 8×8 handwritten digits (bundled with scikit-learn, no network), split reproducibly.

Images come out as float tensors of shape ``(B, 1, 8, 8)`` in ``[-1, 1]``, the range the diffusion models see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DigitsSplit", "load_digits_split"]


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn's 8×8 digits (1,797 scans, 16 grey levels), split into train and held-out test.

    Attributes:
        x_train, x_test: images ``(N, 1, 8, 8)`` in ``[-1, 1]``.
        y_train, y_test: labels ``(N,)`` in ``0..9``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """Load ``sklearn.datasets.load_digits`` and split it reproducibly, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0  # grey levels 0..16 → [-1, 1]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).unsqueeze(1)  # (N, 8, 8) → (N, 1, 8, 8)

    return DigitsSplit(images(x_tr), torch.from_numpy(y_tr).long(), images(x_te), torch.from_numpy(y_te).long())
