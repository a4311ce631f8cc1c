"""A tiny CLIP for the shapes world: text encoder (and judge) of the course's offline miniature Stable Diffusion.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") trains a
text tower and an image tower so that matching (caption, image) pairs have a high cosine similarity and
mismatched pairs a low one: for a batch of ``B`` pairs with unit embeddings ``t_i`` and ``v_j`` the logits are
``s · t_i · v_j`` (``s = exp(logit_scale)``, learnt, capped at 100) and the loss is the symmetric InfoNCE
cross-entropy, text → image over each row plus image → text over each column (their Figure 3).

Everything here is the Hugging Face CLIP stack, built offline and small, so code written for
``openai/clip-vit-base-patch32`` runs unchanged on a saved folder::

    model = CLIPModel.from_pretrained(path)            # also CLIPTextModel.from_pretrained(path) for Stable Diffusion
    processor = CLIPProcessor.from_pretrained(path)    # CLIPTokenizer + CLIPImageProcessor
    tokenizer = CLIPTokenizer.from_pretrained(path)

- Tokenizer (:func:`build_shapes_tokenizer`): a byte-pair ``CLIPTokenizer`` whose merges are learnt (Sennrich et
  al. 2016) from :data:`CAPTION_WORDS`, the words the shapes world's captions use, until every one of them is a
  single whole-word token ``word</w>``. Special tokens as in OpenAI's CLIP: ``<|startoftext|>``, ``<|endoftext|>``
  (also the pad token) with the largest ids, plus ``<|unk|>`` for characters outside the alphabet (OpenAI's
  unk is ``<|endoftext|>``; a separate one keeps a stray character from posing as the end of a caption, where
  the text tower pools). Captions are at most 16 tokens; ``model_max_length`` is 32.
  Byte-pair encoding splits an unknown word into known pieces instead of failing, so :func:`encode_captions`
  checks every word against :data:`CAPTION_WORDS` and raises :class:`CourseError`; the course's functions use it.
- Image processor: ``CLIPImageProcessor`` for 32×32 images (resize the short side to 32, centre-crop 32×32,
  scale to ``[0, 1]``, normalise with OpenAI's CLIP mean and std); without torchvision, transformers uses its
  PIL twin ``CLIPImageProcessorPil``, which gives the same numbers on 32×32 inputs.
- Model (:func:`build_shapes_clip`): ``CLIPModel`` with ViT patches of 4×4 (64 patches + class token) and a
  causal text transformer over the 32 positions; :class:`CLIPConfigSmall` holds the sizes.
- Training (:func:`train_shapes_clip`) uses the course's one loop, :func:`course_utils.training.loop.fit`.
  Duplicate captions: the shapes world has only 720 one-object captions, so a batch of 128 drawn (with
  replacement) from 8,000 images holds about four pairs with the same caption; 99 % of batches hold one. CLIP's
  one-hot targets would push such a caption away from an image it describes exactly; :func:`contrastive_loss`
  instead spreads each row's target evenly over every image of the same caption (so over every text of the
  same caption, column-wise). Without duplicates it is exactly CLIP's loss.
- Measuring: :func:`clip_score` (100 × cosine, clipped at 0, as torchmetrics' ``CLIPScore``, Hessel et al.
  2021) and :func:`retrieval_top1` (text → image) with :func:`retrieval_chance` beside it.

Shapes: images ``uint8 (N, H, W, 3)`` (the shapes world's arrays), or a list of PIL images, or float
``(N, 3, H, W)`` in ``[-1, 1]`` (the diffusion models' tensors); ``pixel_values`` ``(N, 3, 32, 32)``;
``input_ids`` ``(N, L)``; embeddings ``(N, projection_dim)``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import BatchEncoding, CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from course_utils import metrics
from course_utils.data import shapes
from course_utils.errors import CourseError
from course_utils.metrics import clip_embeddings
from course_utils.runtime import quiet_loading
from course_utils.training.loop import TrainConfig, fit

__all__ = [
    "BOS_TOKEN",
    "CAPTION_WORDS",
    "EOS_TOKEN",
    "IMAGE_MEAN",
    "IMAGE_SIZE",
    "IMAGE_STD",
    "LONGEST_CAPTION_TOKENS",
    "MAX_LENGTH",
    "MAX_LOGIT_SCALE",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "CLIPConfigSmall",
    "build_shapes_clip",
    "build_shapes_processor",
    "build_shapes_tokenizer",
    "unknown_words",
    "clip_score",
    "contrastive_loss",
    "encode_captions",
    "learn_merges",
    "load_shapes_clip",
    "pixel_values",
    "retrieval_chance",
    "retrieval_hits",
    "retrieval_top1",
    "save_shapes_clip",
    "text_image_embeddings",
    "train_shapes_clip",
]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = EOS_TOKEN  # as in openai/clip-vit-base-patch32 and Stable Diffusion 1.x
UNK_TOKEN = "<|unk|>"
MAX_LENGTH = 32
# "a large purple triangle right of a large purple triangle on a beige background": 14 words, one token each,
# plus start and end of text.
LONGEST_CAPTION_TOKENS = 16
IMAGE_SIZE = 32
IMAGE_MEAN: tuple[float, float, float] = tuple(OPENAI_CLIP_MEAN)
IMAGE_STD: tuple[float, float, float] = tuple(OPENAI_CLIP_STD)
MAX_LOGIT_SCALE = 100.0  # Radford et al. 2021, section 2.5: the temperature is clipped so logits stay ≤ 100 × cosine
_END_OF_WORD = "</w>"

# Every word a shapes caption can hold: the vocabulary constants plus the template's "a … on a … background".
CAPTION_WORDS: tuple[str, ...] = tuple(
    sorted(
        {
            word
            for phrase in (
                *shapes.SIZES,
                *shapes.COLOURS,
                *shapes.SHAPES,
                *shapes.POSITION_PHRASES.values(),
                *shapes.RELATIONS,
                *shapes.BACKGROUNDS,
                "a on background",
            )
            for word in phrase.split()
        }
    )
)


# ---------------------------------------------------------------------------------------------- tokenizer


def learn_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair merges (Sennrich et al. 2016) that turn each of ``words`` into one token ``word</w>``.

    Each word starts as its characters, the last one marked ``</w>``; the most frequent adjacent pair (ties:
    the alphabetically first) is merged everywhere, until no word has two symbols left. Deterministic.
    """
    if not words or any(not w or not w.isalpha() or w != w.lower() for w in words):
        raise CourseError(f"merges are learnt from lower-case alphabetic words, got {list(words)!r}")
    symbols = {w: [*w[:-1], w[-1] + _END_OF_WORD] for w in dict.fromkeys(words)}
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for seq in symbols.values() for pair in zip(seq, seq[1:], strict=False))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for word, seq in symbols.items():
            merged, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    merged.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            symbols[word] = merged


def _vocabulary(words: Sequence[str], merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Token → id: every letter (plain and word-final), the merged symbols in merge order, then the specials."""
    letters = sorted({c for w in words for c in w})
    tokens = [*letters, *(c + _END_OF_WORD for c in letters), *(a + b for a, b in merges)]
    tokens += [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN]  # end-of-text has the largest id, as in OpenAI's vocabulary
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def build_shapes_tokenizer(*, max_length: int = MAX_LENGTH) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` whose every caption word of the shapes world is one token; pads to ``max_length``.

    Raises :class:`CourseError` if some caption word would not come out as a single token.
    """
    if max_length < LONGEST_CAPTION_TOKENS:
        raise CourseError(
            f"max_length must be at least {LONGEST_CAPTION_TOKENS} (the longest caption), got {max_length}"
        )
    merges = learn_merges(CAPTION_WORDS)
    tokenizer = CLIPTokenizer(
        vocab=_vocabulary(CAPTION_WORDS, merges),
        merges=merges,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
    )
    broken = [w for w in CAPTION_WORDS if tokenizer.tokenize(w) != [w + _END_OF_WORD]]
    if broken:
        raise CourseError(f"the learnt merges do not make single tokens of {broken}")
    return tokenizer


def unknown_words(text: str) -> list[str]:
    """The words of ``text`` outside :data:`CAPTION_WORDS` (case-insensitive), in order."""
    known = set(CAPTION_WORDS)
    return [w for w in text.lower().split() if w not in known]


def _check_words(captions: Sequence[str]) -> None:
    for text in captions:
        if not isinstance(text, str):
            raise CourseError(f"captions must be strings, got {type(text).__name__} {text!r}")
        unknown = unknown_words(text)
        if unknown:
            raise CourseError(
                f"caption {text!r} has words the shapes CLIP does not know: {', '.join(map(repr, unknown))};"
                f" known words: {', '.join(CAPTION_WORDS)}"
            )


def encode_captions(
    tokenizer: CLIPTokenizer, captions: Sequence[str], *, padding: str | bool = "max_length"
) -> BatchEncoding:
    """``input_ids`` and ``attention_mask`` ``(N, L)`` as tensors; every word must be in :data:`CAPTION_WORDS`.

    ``padding="max_length"`` gives ``L = tokenizer.model_max_length`` (what Stable Diffusion feeds its
    U-Net); ``"longest"`` the longest caption's length (at most 16), enough for CLIP's pooled embedding.
    Raises :class:`CourseError` (one line) for a word outside the vocabulary rather than splitting it, and
    for a caption too long to keep its end-of-text token (where the text tower pools).
    """
    if isinstance(captions, str):
        captions = [captions]
    captions = list(captions)
    if not captions:
        raise CourseError("no captions to encode")
    _check_words(captions)
    longest = max(captions, key=lambda text: len(text.split()))
    if len(longest.split()) + 2 > tokenizer.model_max_length:  # truncation would cut the end-of-text token
        raise CourseError(
            f"caption {longest!r} has {len(longest.split())} words; at most {tokenizer.model_max_length - 2} fit"
        )
    return tokenizer(captions, padding=padding, truncation=True, return_tensors="pt")


# ---------------------------------------------------------------------------------------------- images


def build_shapes_processor(tokenizer: CLIPTokenizer, *, image_size: int = IMAGE_SIZE) -> CLIPProcessor:
    """``CLIPProcessor`` = ``tokenizer`` + a ``CLIPImageProcessor`` for ``image_size``² images (OpenAI's mean/std)."""
    # transformers 5 runs CLIPImageProcessor on torchvision and names its PIL twin CLIPImageProcessorPil; asking for
    # the first without torchvision logs a warning and gives the second. Either saves as "CLIPImageProcessor".
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        image_class = transformers.CLIPImageProcessorPil
    else:
        image_class = transformers.CLIPImageProcessor
    image_processor = image_class(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=3,  # bicubic, as OpenAI's
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
        do_convert_rgb=True,
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def pixel_values(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` (array or tensor) → normalised float ``(N, 3, H, W)``, as the processor makes them.

    For training batches: no resizing, so ``H = W`` must already be the model's image size.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise CourseError(f"pixel_values expects uint8 (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() * (1 / 255) - mean) / std


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class CLIPConfigSmall:
    """Sizes of the shapes CLIP; the defaults are the course's model.

    Attributes:
        text_hidden, text_layers, text_heads: the causal text transformer (``d_model``, blocks, heads);
            its MLP is 4 × ``text_hidden`` wide, and ``text_hidden`` is what Stable Diffusion cross-attends to.
        vision_hidden, vision_layers, vision_heads: the ViT.
        image_size, patch_size: ``(image_size / patch_size)²`` patches plus a class token.
        projection_dim: the joint embedding's width.
        max_position_embeddings: text positions; at least the tokenizer's ``model_max_length``.
        logit_scale_init: ``log(1 / 0.07)``, CLIP's initial temperature.
    """

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    image_size: int = IMAGE_SIZE
    patch_size: int = 4
    projection_dim: int = 64
    max_position_embeddings: int = MAX_LENGTH
    logit_scale_init: float = math.log(1 / 0.07)

    def __post_init__(self) -> None:
        for name in ("text", "vision"):
            hidden, heads = getattr(self, f"{name}_hidden"), getattr(self, f"{name}_heads")
            if hidden <= 0 or heads <= 0 or hidden % heads:
                raise CourseError(
                    f"CLIPConfigSmall.{name}_hidden ({hidden}) must be a positive multiple of {name}_heads ({heads})"
                )
            if getattr(self, f"{name}_layers") <= 0:
                raise CourseError(f"CLIPConfigSmall.{name}_layers must be positive")
        if self.patch_size <= 0 or self.image_size % self.patch_size:
            raise CourseError(
                f"CLIPConfigSmall.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.projection_dim <= 0:
            raise CourseError("CLIPConfigSmall.projection_dim must be positive")


def build_shapes_clip(config: CLIPConfigSmall, tokenizer: CLIPTokenizer) -> CLIPModel:
    """An untrained ``CLIPModel`` of ``config``'s sizes for ``tokenizer``'s vocabulary and special tokens."""
    if config.max_position_embeddings < tokenizer.model_max_length:
        raise CourseError(
            f"max_position_embeddings ({config.max_position_embeddings}) is shorter than the tokenizer's"
            f" model_max_length ({tokenizer.model_max_length})"
        )
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": config.text_hidden,
        "intermediate_size": 4 * config.text_hidden,
        "num_hidden_layers": config.text_layers,
        "num_attention_heads": config.text_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "projection_dim": config.projection_dim,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,  # the text tower pools at the first end-of-text token
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "hidden_size": config.vision_hidden,
        "intermediate_size": 4 * config.vision_hidden,
        "num_hidden_layers": config.vision_layers,
        "num_attention_heads": config.vision_heads,
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "num_channels": 3,
        "projection_dim": config.projection_dim,
    }
    clip_config = CLIPConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=config.projection_dim,
        logit_scale_init_value=config.logit_scale_init,
    )
    return CLIPModel(clip_config)


def save_shapes_clip(model: CLIPModel, processor: CLIPProcessor, path: str | Path) -> Path:
    """Write ``model`` (safetensors) and ``processor`` into one folder, laid out as ``openai/clip-vit-base-patch32``.

    Besides what transformers 5 writes (``tokenizer.json``, ``processor_config.json``) it writes the files older
    versions and diffusers' ``feature_extractor`` read: ``vocab.json``, ``merges.txt``, ``preprocessor_config.json``.
    """
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    processor.image_processor.save_pretrained(path)  # preprocessor_config.json
    backend = json.loads(processor.tokenizer.backend_tokenizer.to_str())["model"]
    (path / "vocab.json").write_text(json.dumps(backend["vocab"], ensure_ascii=False) + "\n", encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["merges"]]
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return path


def load_shapes_clip(path: str | Path) -> tuple[CLIPModel, CLIPProcessor]:
    """``(CLIPModel.from_pretrained(path), CLIPProcessor.from_pretrained(path))``, in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "tokenizer_config.json").is_file():
        raise CourseError(
            f"{path} is not a saved shapes CLIP (config.json and tokenizer_config.json expected; run `make models`)"
        )
    with quiet_loading():
        return CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)


# ---------------------------------------------------------------------------------------------- training


def contrastive_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss, with duplicates as shared positives.

    Args:
        text_embeds, image_embeds: unit vectors ``(B, D)``; row ``i`` of each is a matching pair.
        logit_scale: the log temperature (a scalar parameter); ``exp`` of it is capped at 100.
        groups: ``(B,)`` integer labels, equal where captions are equal; ``None``: all distinct.

    Returns:
        the mean of the text → image and image → text cross-entropies. The target of text ``i`` is spread
        evenly over the images ``j`` with ``groups[j] == groups[i]`` (one-hot when there is no duplicate).
    """
    logits = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * text_embeds @ image_embeds.T  # (B texts, B images)
    if groups is None:
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    same = (groups[:, None] == groups[None, :]).to(logits.dtype)
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric: equal groups have equal sizes
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def train_shapes_clip(
    model: CLIPModel,
    images: np.ndarray,
    captions: Sequence[str],
    *,
    tokenizer: CLIPTokenizer,
    config: TrainConfig,
    description: str = "shapes CLIP",
) -> tuple[CLIPModel, list[float]]:
    """Train ``model`` on (image, caption) pairs with :func:`course_utils.training.loop.fit`.

    Each step draws ``config.batch_size`` indices with the loop's generator and minimises
    :func:`contrastive_loss` (captions grouped by their text, so duplicates are shared positives).

    Args:
        images: uint8 ``(N, S, S, 3)``, ``S`` the model's image size.
        captions: ``N`` captions, every word in :data:`CAPTION_WORDS`.

    Returns:
        (the EMA copy of the model, the loss of every step).
    """
    images = np.asarray(images)
    size = model.config.vision_config.image_size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise CourseError(f"training images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
    if len(captions) != len(images):
        raise CourseError(f"{len(images)} images but {len(captions)} captions")
    unique, caption_group = np.unique(np.asarray(list(captions), dtype=object).astype(str), return_inverse=True)
    encoded = encode_captions(tokenizer, list(unique), padding="longest")  # (U, L), L ≤ 16
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    group = torch.from_numpy(caption_group.astype(np.int64))
    pixels_uint8 = torch.from_numpy(images)

    def loss_fn(net: CLIPModel, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch of pairs, 2) unit text and image embeddings, 3) symmetric InfoNCE with shared positives
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        g = group[idx]
        out = net(input_ids=ids[g], attention_mask=mask[g], pixel_values=pixel_values(pixels_uint8[idx]))
        return contrastive_loss(out.text_embeds, out.image_embeds, net.logit_scale, groups=g)

    return fit(model, loss_fn=loss_fn, config=config, description=description)


# ---------------------------------------------------------------------------------------------- measuring


def text_image_embeddings(
    model: CLIPModel, processor: CLIPProcessor, images, captions: Sequence[str], *, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`course_utils.metrics.clip_embeddings` after checking every word is in :data:`CAPTION_WORDS`."""
    _check_words(list(captions))
    return clip_embeddings(model, processor, images, captions, batch_size=batch_size)


def clip_score(model: CLIPModel, processor: CLIPProcessor, images, captions: Sequence[str]) -> torch.Tensor:
    """:func:`course_utils.metrics.clip_score` ``(N,)`` after checking every word is in :data:`CAPTION_WORDS`."""
    _check_words(list(captions))
    return metrics.clip_score(model, processor, images, captions)


def retrieval_top1(model: CLIPModel, processor: CLIPProcessor, images, captions: Sequence[str]) -> float:
    """Text → image top-1 accuracy: the mean of :func:`retrieval_hits`."""
    return float(retrieval_hits(model, processor, images, captions).mean())


def retrieval_hits(model: CLIPModel, processor: CLIPProcessor, images, captions: Sequence[str]) -> np.ndarray:
    """Per caption, whether its most similar image (among all ``N``) shows it: ``(N,)`` booleans.

    An image with the same caption as the query counts as a hit (duplicates are the same scene). Compare with
    :func:`retrieval_chance`, ``1 / N`` when the captions are distinct.
    """
    captions = list(captions)
    if len(images) != len(captions):
        raise CourseError(f"{len(images)} images but {len(captions)} captions")
    text, image = text_image_embeddings(model, processor, images, captions)
    best = (text @ image.T).argmax(dim=1).tolist()  # (N,)
    return np.array([captions[j] == captions[i] for i, j in enumerate(best)], dtype=bool)


def retrieval_chance(captions: Sequence[str]) -> float:
    """The top-1 accuracy of picking an image at random: mean over captions of (images with it) / N."""
    counts = Counter(captions)
    return float(np.mean([counts[c] for c in captions]) / len(captions))
