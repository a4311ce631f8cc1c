"""Tiny random-weight diffusers pipelines, built offline, for testing the course's Hub-model code paths.

The ``gpu`` profile loads multi-billion-parameter Hub models (DeepFloyd IF, Stable Diffusion) that a test
machine can neither download nor run. Their *code paths* are tested instead on pipelines of the same
classes, with the same kind of configuration, but a few hundred thousand random weights, saved in the
diffusers folder layout (``model_index.json`` + one sub-folder per component) that
``DiffusionPipeline.from_pretrained(folder)`` and :func:`course_utils.registry.resolve` read.

Nothing here touches the network: tokenizers are built from an explicit word list with the
``tokenizers`` library, models from explicit configs, and every random draw is seeded, so a builder
called twice writes the same weights.

One builder per pipeline, each ``build_tiny_<name>(path) -> Path`` returning the folder it wrote:

* :func:`build_tiny_if` — DeepFloyd IF stage I (``IFPipeline``: T5 encoder + pixel U-Net predicting ε and
  a variance, DDPM scheduler with the cosine schedule).

Later builders (SD, SDXL, SD3) belong here too; share :func:`tiny_t5_tokenizer` / :func:`tiny_t5_encoder`
where they need a T5, and keep each one small (well under a million parameters per model).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = [
    "IF_SAMPLE_SIZE",
    "PROMPT_WORDS",
    "T5_D_MODEL",
    "build_tiny_if",
    "tiny_if_scheduler",
    "tiny_if_unet",
    "tiny_t5_encoder",
    "tiny_t5_tokenizer",
]

SEED = 0
T5_D_MODEL = 32
IF_SAMPLE_SIZE = 16

PROMPT_WORDS = (
    # the course's gpu-profile prompts (course_utils.profiles) and the tests' prompts
    "a an of the oil painting snowy mountain village man wearing hat rocket ship high quality photo"
    " dog cat on beach in space with red blue green"
).split()
"""Words the tiny tokenizer knows; any other word becomes ``<unk>`` (which is fine for random weights)."""

T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
"""T5's layout: pad = 0 (also the decoder start), eos = 1, unk = 2."""


def tiny_t5_tokenizer(words: Iterable[str] = PROMPT_WORDS):
    """A T5-style tokenizer (SentencePiece-like Unigram over whole words) built offline.

    Vocabulary: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``▁`` and then ``▁word`` for each word, in order.
    Text is split on whitespace and every word gets the ``▁`` prefix (``Metaspace``), as in T5; ``</s>``
    is appended to every sequence. Survives ``save_pretrained`` / ``from_pretrained`` (``tokenizer.json``).
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast

    pieces = list(dict.fromkeys(w.lower() for w in words))
    vocab = [(token, 0.0) for token in T5_SPECIAL_TOKENS] + [("▁", -2.0)]
    vocab += [(f"▁{word}", -3.0 - 0.01 * i) for i, word in enumerate(pieces)]
    backend = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        additional_special_tokens=[],
        model_max_length=77,
    )


def tiny_t5_encoder(vocab_size: int, *, d_model: int = T5_D_MODEL, num_layers: int = 2, seed: int = SEED):
    """A random-weight ``T5EncoderModel``: ``d_model`` wide, ``num_layers`` deep, 4 heads, gated GELU (T5 v1.1)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",  # T5 v1.1, the T5-XXL of IF
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


def tiny_if_unet(
    *, sample_size: int = IF_SAMPLE_SIZE, text_dim: int = T5_D_MODEL, cross_attention_dim: int = 64, seed: int = SEED
):
    """A random-weight IF-stage-I-shaped ``UNet2DConditionModel`` (about 0.6 M parameters).

    As in ``DeepFloyd/IF-I-*``: 3 input channels, 6 output channels (ε and the "learned_range" variance
    interpolation), a plain ResNet first block then ``SimpleCrossAttn`` blocks, T5 hidden states projected by
    ``encoder_hid_proj`` (``encoder_hid_dim`` → ``cross_attention_dim``) and pooled into the timestep embedding
    (``addition_embed_type="text"``), group-norm cross-attention, scale-shift ResNets, GELU.
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        encoder_hid_dim=text_dim,
        encoder_hid_dim_type="text_proj",
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    ).eval()


def tiny_if_scheduler():
    """The ``DDPMScheduler`` configuration of IF stage I: cosine ᾱ, learned-range variance, dynamic thresholding."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        beta_start=0.0001,
        beta_end=0.02,
        prediction_type="epsilon",
        variance_type="learned_range",
        clip_sample=True,
        clip_sample_range=1.0,
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
    )


def build_tiny_if(path: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight DeepFloyd-IF-stage-I ``IFPipeline`` to ``path`` and return it.

    Components: :func:`tiny_t5_tokenizer`, :func:`tiny_t5_encoder` (d_model 32, 2 layers),
    :func:`tiny_if_unet` (16×16 pixels), :func:`tiny_if_scheduler`; no safety checker, feature extractor or
    watermarker (``requires_safety_checker=False``). Saved as safetensors; ``model_index.json`` names
    ``IFPipeline``, so :func:`course_utils.registry.resolve` files the folder under the ``if`` family.
    """
    from diffusers import IFPipeline

    path = Path(path)
    tokenizer = tiny_t5_tokenizer()
    pipeline = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5_encoder(len(tokenizer), seed=seed),
        unet=tiny_if_unet(seed=seed),
        scheduler=tiny_if_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(path, safe_serialization=True)
    return path
