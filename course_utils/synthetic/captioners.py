"""Captioners: a title in, ``n`` variations of it out, each still naming the title's concept (seed 000, task D
step 1: "3 new variations … faithful to the original concept while introducing diversity").

- :class:`TemplateCaptioner` (``template``, the offline default): a seeded grammar. A title of the shapes world
  ("a red circle") keeps every attribute it names and draws the ones it leaves out (size, colour, position,
  background), so each variation is a full caption the shapes models read; any other title ("Almond Horchata") is
  kept verbatim inside a phrase of serving, style and light.
- :class:`LLMCaptioner` (a transformers model id, e.g. ``google/gemma-3-1b-it``): a text-generation pipeline
  prompted through the model's chat template, sampled with a seed per title and attempt.

A captioner only proposes. :func:`validate_captions` decides what is kept (no empty caption, none twice for a
title, none too long, the concept still present, the image model able to read it), and :func:`caption_title`
asks again with a new seed when too few survive, then reports the title as failed: never a silent hole.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from course_utils.data import shapes
from course_utils.errors import CourseError
from course_utils.synthetic.ids import stable_seed

__all__ = [
    "CaptionResult",
    "Captioner",
    "LLMCaptioner",
    "TemplateCaptioner",
    "caption_title",
    "concept_words",
    "llm_dtype",
    "load_captioner",
    "parse_variations",
    "readable_by",
    "validate_captions",
]

MAX_CAPTION_CHARS = 200  # about CLIP's 77 tokens; the shapes model's own limit is checked by its prompt check


class Captioner(Protocol):
    """Proposes ``n`` variations of ``title``; the same ``seed`` proposes the same ones."""

    name: str

    def variations(self, title: str, *, n: int, seed: int) -> list[str]: ...


# ---------------------------------------------------------------------------------------------- template


_SERVINGS = (
    "served on a white plate",
    "in a rustic ceramic bowl",
    "on a wooden board",
    "in a tall glass",
    "on a slate platter",
    "in a small cast-iron pan",
)
_STYLES = ("food photography", "a close-up photo", "an overhead shot", "a magazine photo", "a studio photo")
_LIGHTS = ("soft morning light", "warm evening light", "natural window light", "bright studio light")


def _is_shapes_title(title: str) -> bool:
    try:
        shapes.prompt_attributes(title)
    except CourseError:
        return False
    return True


@dataclass(frozen=True)
class TemplateCaptioner:
    """A seeded grammar of variations (no model, no network)."""

    name: str = "template"

    def variations(self, title: str, *, n: int, seed: int) -> list[str]:
        """``n`` distinct variations of ``title`` (fewer only when the grammar has fewer), drawn without replacement
        by ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        if _is_shapes_title(title):
            options = _shapes_options(shapes.prompt_attributes(title))
            text = _shapes_caption
        else:
            options = [(title, *rest) for rest in itertools.product(_SERVINGS, _STYLES, _LIGHTS)]
            text = _dish_caption
        picked = rng.choice(len(options), size=min(n, len(options)), replace=False)
        return [text(options[int(i)]) for i in picked]


def _dish_caption(choice: tuple[str, str, str, str]) -> str:
    title, serving, style, light = choice
    return f"{style} of {title}, {serving}, {light}"


def _shapes_options(named: dict[str, str]) -> list[shapes.Scene]:
    """Every full scene that keeps what ``named`` names and fills what it leaves out."""

    def values(key: str) -> tuple[str, ...]:
        vocabulary = {"size": shapes.SIZES, "colour": shapes.COLOURS, "background": shapes.BACKGROUNDS}
        return (named[key],) if key in named else vocabulary[key.removesuffix("_2")]

    scenes = []
    if named["count"] == "one":
        positions = (named["position"],) if "position" in named else shapes.POSITIONS
        for size, colour, position, bg in itertools.product(
            values("size"), values("colour"), positions, values("background")
        ):
            scenes.append(shapes.Scene((shapes.ShapeSpec(named["shape"], colour, size, position),), bg))
        return scenes
    for size, colour, size2, colour2, bg in itertools.product(
        values("size"), values("colour"), values("size_2"), values("colour_2"), values("background")
    ):
        first = shapes.ShapeSpec(named["shape"], colour, size)
        second = shapes.ShapeSpec(named["shape_2"], colour2, size2)
        scenes.append(shapes.Scene.pair(first, second, relation=named["relation"], background=bg))
    return scenes


def _shapes_caption(scene: shapes.Scene) -> str:
    return shapes.caption(scene)


# ---------------------------------------------------------------------------------------------- language model

PROMPT = (
    'Write {n} different captions for a photo of "{title}". Every caption must contain the words "{title}" and '
    "vary the ingredients, the style or the preparation. Answer with one caption per line and nothing else."
)


def llm_dtype(device: str) -> str:
    """The dtype a small chat model runs in on ``device``: gemma-3 in float16 overflows to empty or NaN text
    (transformers issue #36822), so bfloat16 where the GPU has it, else float32 (a T4; and every CPU)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def parse_variations(text: str) -> list[str]:
    """The captions in a model's answer: one per line, with list markers (``1.``, ``2)``, ``-``, ``*``) and
    surrounding quotes removed, blank lines dropped."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+[.):]|[-*•])\s*", "", line).strip().strip("\"'“”").strip()
        if line:
            out.append(line)
    return out


@dataclass
class LLMCaptioner:
    """Variations from a chat model through transformers' ``text-generation`` pipeline and its chat template.

    ``source`` is what ``from_pretrained`` loads: a Hub id resolved by the registry, or a local folder.
    """

    source: str
    name: str = ""
    device: str = "cpu"
    dtype: str | None = None
    max_new_tokens: int = 48
    token: str | None = field(default=None, repr=False)
    _pipe: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.source

    def _pipeline(self) -> Any:
        if self._pipe is None:
            import torch
            from transformers import pipeline

            from course_utils.runtime import DTYPES, quiet_loading

            dtype = DTYPES[self.dtype or llm_dtype(self.device)]
            try:
                with quiet_loading():
                    self._pipe = pipeline(
                        "text-generation",
                        model=self.source,
                        device=torch.device(self.device),
                        dtype=dtype,
                        token=self.token,
                    )
            except Exception as err:  # gone, gated, offline, not a causal language model …
                from course_utils.course.registry import MODELS, load_failure_reason, resolve_text_model

                if self.name in MODELS:  # a Hub id: what to do about it being gone, gated or not downloaded
                    hint = resolve_text_model(self.name).gone_or_gated_hint(load_failure_reason(err))
                    hint = hint.replace(self.token, "***") if self.token else hint
                    raise CourseError(f"cannot load captioner {hint}") from None
                message = str(err).replace(self.token, "***") if self.token else str(err)
                first = (message.strip().splitlines() or [""])[0][:200]
                raise CourseError(f"cannot load captioner {self.name}: {type(err).__name__}: {first}") from None
        return self._pipe

    def variations(self, title: str, *, n: int, seed: int) -> list[str]:
        """One sampled answer to :data:`PROMPT`, split into lines (:func:`parse_variations`); seeded on a forked
        RNG, so the caller's random state is untouched."""
        import torch

        pipe = self._pipeline()
        messages = [{"role": "user", "content": PROMPT.format(n=n, title=title)}]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = pipe(
                messages,
                max_new_tokens=self.max_new_tokens * n,
                do_sample=True,
                temperature=0.9,
                top_p=0.95,
                return_full_text=False,
            )
        answer = out[0]["generated_text"]
        if isinstance(answer, list):  # chat format: the assistant's turn
            answer = answer[-1]["content"]
        return parse_variations(str(answer))


def load_captioner(name: str, *, device: str = "cpu", token: str | None = None) -> Captioner:
    """``template`` → :class:`TemplateCaptioner`; a local transformers folder (with ``config.json``) or a Hub id of
    the registry's ``causal-lm`` family → :class:`LLMCaptioner` (loaded lazily, at its first caption)."""
    from pathlib import Path

    if name == "template":
        return TemplateCaptioner()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CourseError(f"captioner folder {path} has no config.json: not a transformers model")
        return LLMCaptioner(str(path), device=device, token=token)
    from course_utils.course.registry import resolve_text_model

    try:
        resolved = resolve_text_model(name)
    except CourseError as err:  # say the offline choice too
        raise CourseError(f"captioner {err}; or --captioner template (offline, no model)") from None
    return LLMCaptioner(resolved.source, name=name, device=device, token=token)


# ---------------------------------------------------------------------------------------------- validation

_STOPWORDS = frozenset("a an and the of with in on at to for from by or".split())


def concept_words(title: str) -> list[str]:
    """The words of ``title`` a variation must keep: all but articles and prepositions, lowercased."""
    return [w for w in re.findall(r"[\w']+", title.lower()) if w not in _STOPWORDS]


def _concept_kept(title: str, text: str) -> bool:
    if _is_shapes_title(title):  # the shapes world: every attribute the title names, read back from the caption
        if not _is_shapes_title(text):
            return False
        named, got = shapes.prompt_attributes(title), shapes.prompt_attributes(text)
        return all(got.get(k) == v for k, v in named.items())
    lowered = text.lower()
    return all(word in lowered for word in concept_words(title))


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def validate_captions(
    title: str,
    candidates: Sequence[str],
    *,
    n: int,
    max_chars: int = MAX_CAPTION_CHARS,
    readable: Callable[[str], str | None] | None = None,
) -> tuple[list[str], list[str]]:
    """Keep the first ``n`` acceptable ``candidates``; say why each other one was refused.

    A caption is refused when it is empty, longer than ``max_chars``, a repeat (case and spacing ignored) of one
    already kept, no longer naming the title's concept (:func:`concept_words`; for shapes titles, every attribute
    the title names), or when ``readable(caption)`` returns a reason (the image model's prompt check).

    Returns:
        ``(kept, problems)``: at most ``n`` captions, whitespace-normalised, and one line per refusal.
    """
    kept: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for raw in candidates:
        text = " ".join(str(raw).split())
        if len(kept) == n:
            break
        if not text:
            problems.append("an empty caption")
        elif len(text) > max_chars:
            problems.append(f"{text[:40]!r}…: {len(text)} characters, more than {max_chars}")
        elif _normal(text) in seen:
            problems.append(f"{text!r}: a duplicate")
        elif not _concept_kept(title, text):
            problems.append(f"{text!r}: does not name the concept of {title!r}")
        elif readable is not None and (reason := readable(text)):
            problems.append(f"{text!r}: {reason}")
        else:
            kept.append(text)
            seen.add(_normal(text))
    return kept, problems


def readable_by(settings: Any) -> Callable[[str], str | None]:
    """A caption check for :func:`validate_captions`: the reason ``settings``' image model (checked
    :class:`course_utils.sd.support.GenerationSettings`) cannot read a caption, or ``None``."""
    from course_utils.sd.support import check_prompt

    def reason(text: str) -> str | None:
        try:
            check_prompt(settings, text, kind="caption")
        except CourseError as err:
            return str(err).split(";")[0]
        return None

    return reason


@dataclass(frozen=True)
class CaptionResult:
    """A title's captions (``n`` of them), or ``failed`` with the reason; ``attempts`` how many answers it took."""

    captions: tuple[str, ...]
    attempts: int
    failed: str | None = None


def caption_title(
    captioner: Captioner,
    title: str,
    *,
    n: int,
    seed: int,
    tid: str,
    retries: int = 2,
    max_chars: int = MAX_CAPTION_CHARS,
    readable: Callable[[str], str | None] | None = None,
) -> CaptionResult:
    """Ask ``captioner`` for ``n`` valid variations of ``title`` (row ``tid``); answer ``a`` (0, 1, …) is drawn
    with ``stable_seed(seed, "caption", tid, a)``. Valid captions add up across answers; after ``1 + retries``
    answers with fewer than ``n``, the title fails with the last answers' problems."""
    if not str(title).strip():
        return CaptionResult((), 0, failed="the title is empty")
    kept: list[str] = []
    problems: list[str] = []
    for attempt in range(1 + retries):
        candidates = captioner.variations(title, n=n, seed=stable_seed(seed, "caption", tid, attempt))
        more, problems = validate_captions(title, [*kept, *candidates], n=n, max_chars=max_chars, readable=readable)
        kept = more
        if len(kept) == n:
            return CaptionResult(tuple(kept), attempt + 1)
    got = f"{len(kept)} valid of {n} after {1 + retries} answers"
    why = "; ".join(problems[:3]) or "the captioner proposed too few"
    return CaptionResult((), 1 + retries, failed=f"{got}: {why}")
