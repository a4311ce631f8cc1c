"""Measuring samples: does a generated digit look like the digit that was asked for?

A classifier trained on the *real* digits (scikit-learn's RBF support-vector machine on the raw 8×8
grey levels) recognises generated images; *agreement* is the fraction recognised as the requested
class. Its held-out accuracy on real test digits is reported beside it, as the ceiling.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from course_utils.data.digits import load_digits_split
from course_utils.data.images import gaussian_blur
from course_utils.errors import CourseError

__all__ = [
    "DigitClassifier",
    "agreement",
    "classifier_for",
    "clip_embeddings",
    "clip_score",
    "detail",
    "digit_classifier",
    "diversity",
    "psnr",
    "psnr_per_image",
    "to_uint8_images",
]


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


def detail(images: torch.Tensor, *, sigma: float = 0.7) -> torch.Tensor:
    """How much fine detail each image holds: the RMS of its high frequencies, ``x − blur(x, σ)``. ``(B,)``.

    A blurry estimate (one-step denoising's posterior mean) has less detail than real images; a sample has about
    as much; noise has more.
    """
    x = images.float()
    return (x - gaussian_blur(x, sigma)).pow(2).flatten(1).mean(dim=1).sqrt()


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


# ---------------------------------------------------------------------------------------------- CLIP


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _pooled(output) -> torch.Tensor:
    """``get_*_features`` gives the projection (transformers 4) or an output with it as ``pooler_output`` (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_embeddings(model, processor, images, texts: Sequence[str], *, batch_size: int = 256):
    """Unit text and image embeddings ``(N_text, D)``, ``(N_image, D)`` of any transformers ``CLIPModel`` and its
    ``CLIPProcessor`` (``openai/clip-vit-*`` or the course's shapes CLIP).

    ``images``: uint8 ``(N, H, W, 3)``, a list of PIL images, or float ``(N, 3, H, W)`` in ``[-1, 1]``; texts are
    padded to the longest and truncated to the tokenizer's limit (77 tokens for OpenAI's CLIP).
    """
    images = to_uint8_images(images)
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise CourseError("texts must be a list of strings")
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    texts, embedded_texts, embedded_images = list(texts), [], []
    for start in range(0, len(texts), batch_size):
        enc = processor.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
        embedded_texts.append(_unit(_pooled(model.get_text_features(**enc.to(device)))).float().cpu())
    for start in range(0, len(images), batch_size):
        pix = processor(images=images[start : start + batch_size], return_tensors="pt")["pixel_values"]
        embedded_images.append(_unit(_pooled(model.get_image_features(pixel_values=pix.to(device)))).float().cpu())
    return torch.cat(embedded_texts), torch.cat(embedded_images)


def clip_score(model, processor, images, texts: Sequence[str]) -> torch.Tensor:
    """CLIPScore ``(N,)``: ``100 · max(cos(image_i, text_i), 0)`` as in torchmetrics (Hessel et al. 2021)."""
    if len(images) != len(texts):
        raise CourseError(f"{len(images)} images but {len(texts)} texts")
    text, image = clip_embeddings(model, processor, images, texts)
    return (100 * (text * image).sum(dim=-1)).clamp(min=0)


def to_uint8_images(images) -> np.ndarray | list:
    """uint8 ``(N, H, W, 3)`` arrays and lists of PIL images as they are; float ``(N, 3, H, W)`` in [-1, 1] → uint8."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise CourseError(
                f"image tensors must be float (N, 3, H, W) in [-1, 1], got {images.dtype} {tuple(images.shape)}"
            )
        x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise CourseError(f"image arrays must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        return images
    images = list(images)
    if not images:
        raise CourseError("no images")
    return images
