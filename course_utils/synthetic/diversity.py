"""How varied a synthetic set is: distinct-n of its captions and the mean pairwise distance of its images.

distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models") is the
number of distinct n-grams divided by the number of n-grams over all captions: 1 when no n-gram repeats, small when
the captions say the same thing. (The paper divides by the number of words; for n = 1 the two agree, and dividing by
the n-grams, as common implementations do, makes distinct-n 1 exactly when no n-gram repeats.)

Tokenisation: lowercase, then a word is a maximal run of letters and digits (split on whitespace and punctuation,
underscores included: ``"Neon-glasses!"`` → ``neon``, ``glasses``); n-grams never span two captions.

Image diversity is :func:`course_utils.metrics.diversity` (mean pairwise RMS distance in ``[-1, 1]``), on any images
:func:`course_utils.synthetic.grids.uint8_stack` reads; :func:`image_diversity_by_group` averages it over groups
(e.g. the images of one source title) with a bootstrap interval over the groups.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from course_utils.data.shapes import to_tensor
from course_utils.errors import CourseError
from course_utils.metrics import diversity
from course_utils.stats import Estimate, bootstrap_mean
from course_utils.synthetic.grids import uint8_stack

__all__ = ["caption_diversity", "distinct_n", "image_diversity", "image_diversity_by_group", "words"]

_WORD = re.compile(r"[^\W_]+")  # letters and digits


def words(caption: str) -> list[str]:
    """The lowercase words of ``caption``, split on whitespace and punctuation."""
    return _WORD.findall(caption.lower())


def distinct_n(captions: Sequence[str], n: int) -> float:
    """distinct-n: distinct n-grams / n-grams over all ``captions`` (Li et al. 2016), in ``(0, 1]``."""
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise CourseError("captions must be a list of strings")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CourseError(f"n must be a positive integer, got {n!r}")
    grams = []
    for caption in captions:
        w = words(caption)
        grams += [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        raise CourseError(f"no {n}-grams: every caption has fewer than {n} words")
    return len(set(grams)) / len(grams)


def caption_diversity(captions: Sequence[str]) -> dict[str, float]:
    """``{"distinct_1": …, "distinct_2": …, "vocabulary": …}`` of ``captions``: the two ratios, and the number of
    distinct words (the ratios fall as captions grow longer and repeat their grammar; the vocabulary does not)."""
    vocabulary = len({w for caption in captions for w in words(caption)})
    return {"distinct_1": distinct_n(captions, 1), "distinct_2": distinct_n(captions, 2), "vocabulary": vocabulary}


def image_diversity(images) -> float:
    """Mean pairwise RMS distance of ``images`` in ``[-1, 1]`` (0 when all are equal): uint8 ``(N, H, W, 3)``, a
    list of PIL images or ``(H, W, 3)`` arrays, or float ``(N, 3, H, W)`` in ``[-1, 1]``."""
    return diversity(to_tensor(uint8_stack(images)))


def image_diversity_by_group(images, groups: Sequence[object]) -> Estimate:
    """The mean over groups of each group's :func:`image_diversity`, with its 95 % bootstrap interval over groups.

    ``groups[i]`` names the group of image ``i`` (e.g. its source title); every group needs two images or more.
    """
    stacked = uint8_stack(images)
    groups = list(groups)
    if len(groups) != len(stacked):
        raise CourseError(f"{len(stacked)} images but {len(groups)} group labels")
    members: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    lonely = [g for g, idx in members.items() if len(idx) < 2]
    if lonely:
        raise CourseError(
            f"a group's diversity needs two images or more; groups with one: {', '.join(map(str, lonely))}"
        )
    per_group = np.array([image_diversity(stacked[idx]) for idx in members.values()])
    return bootstrap_mean(per_group)
