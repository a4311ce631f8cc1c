"""Measuring samples: does a generated digit look like the digit that was asked for?

A classifier trained on the *real* digits (scikit-learn's RBF support-vector machine on the raw 8×8
grey levels) recognises generated images; *agreement* is the fraction recognised as the requested
class. Its held-out accuracy on real test digits is reported beside it, as the ceiling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from course_utils.data import load_digits_split

__all__ = ["DigitClassifier", "agreement", "classifier_for", "digit_classifier", "diversity", "psnr", "psnr_per_image"]


@dataclass(frozen=True)
class DigitClassifier:
    """A fitted classifier for ``(B, 1, 8, 8)`` digits in ``[-1, 1]``.

    Attributes:
        model: the fitted scikit-learn estimator.
        held_out_accuracy: accuracy on the real held-out test digits.
    """

    model: object
    held_out_accuracy: float

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Recognised labels ``(B,)`` for images ``(B, 1, 8, 8)`` in ``[-1, 1]``."""
        return torch.from_numpy(self.model.predict(_features(images))).long()


def _features(images: torch.Tensor) -> np.ndarray:
    """``(B, 1, 8, 8)`` in ``[-1, 1]`` → ``(B, 64)`` grey levels in ``[0, 16]``, as scikit-learn ships them."""
    x = images.detach().float().cpu().clamp(-1, 1)
    return ((x + 1) / 2 * 16).reshape(x.shape[0], -1).numpy()


@functools.cache
def digit_classifier(seed: int = 0) -> DigitClassifier:
    """Fit (once per process) an RBF SVM on the training split of :func:`load_digits_split`."""
    from sklearn.svm import SVC

    split = load_digits_split(seed=seed)
    model = SVC(gamma=0.001, C=10.0).fit(_features(split.x_train), split.y_train.numpy())
    accuracy = float((model.predict(_features(split.x_test)) == split.y_test.numpy()).mean())
    return DigitClassifier(model=model, held_out_accuracy=accuracy)


def classifier_for(denoiser: object) -> DigitClassifier | None:
    """The digit classifier when ``denoiser`` is an 8×8 single-channel digits model, else ``None``."""
    return digit_classifier() if tuple(denoiser.sample_shape) == (1, 8, 8) else None


def agreement(images: torch.Tensor, labels: torch.Tensor, classifier: DigitClassifier | None = None) -> float:
    """Fraction of ``images`` ``(B, 1, 8, 8)`` that the classifier recognises as ``labels`` ``(B,)``."""
    classifier = classifier or digit_classifier()
    return float((classifier.predict(images) == labels.cpu()).float().mean())


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of ``x`` against ``reference``, both in ``[-1, 1]`` (peak-to-peak 2)."""
    mse = torch.mean((x.float() - reference.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def psnr_per_image(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image of ``x`` ``(B, C, H, W)`` against ``reference`` (broadcastable). ``(B,)``."""
    mse = ((x.float() - reference.float()) ** 2).flatten(1).mean(dim=1).clamp(min=1e-12)
    return 10 * torch.log10(4.0 / mse)


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise RMS distance between images ``(N, C, H, W)`` in ``[-1, 1]`` (0 when all are equal).

    Used per condition: the more classifier-free guidance pushes, the more alike its samples become.
    """
    if images.shape[0] < 2:
        return 0.0
    flat = images.float().flatten(1)
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    n = flat.shape[0]
    return float(d.sum() / (n * (n - 1)))
