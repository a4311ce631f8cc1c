"""Tiny random-weight diffusers pipelines, built offline, for testing the course's Hub-model code paths.

The ``gpu`` profile loads multi-billion-parameter Hub models (DeepFloyd IF, Stable Diffusion) that a test
machine can neither download nor run. Their *code paths* are tested instead on pipelines of the same
classes, with the same kind of configuration, but a few hundred thousand random weights, saved in the
diffusers folder layout (``model_index.json`` + one sub-folder per component) that
``DiffusionPipeline.from_pretrained(folder)`` and :func:`course_utils.course.registry.resolve` read.

Nothing here touches the network: tokenizers are built from an explicit word list with the
``tokenizers`` library, models from explicit configs, and every random draw is seeded, so a builder
called twice writes the same weights.

One builder per pipeline, each ``build_tiny_<name>(path) -> Path`` returning the folder it wrote:

* :func:`build_tiny_if` — DeepFloyd IF stage I (``IFPipeline``: T5 encoder + pixel U-Net predicting ε and
  a variance, DDPM scheduler with the cosine schedule).
* :func:`build_tiny_if_upscaler` — DeepFloyd IF stage II (``IFSuperResolutionPipeline``, 16 → 32 pixels).
* :func:`build_tiny_shapes_sd` — the course's miniature Stable Diffusion at test size (``StableDiffusionPipeline``).
* :func:`build_tiny_sd`, :func:`build_tiny_sdxl`, :func:`build_tiny_sd3` — the Hub families' pipeline classes
  (``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline``) with CLIP tokenizers
  built by :func:`tiny_clip_tokenizer` (and a T5 for SD3).

Share :func:`tiny_t5_tokenizer` / :func:`tiny_t5_encoder` where a T5 is needed, and keep each model small (well
under a million parameters).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = [
    "CLIP_MAX_LENGTH",
    "IF_SAMPLE_SIZE",
    "PROMPT_WORDS",
    "T5_D_MODEL",
    "build_tiny_if",
    "build_tiny_if_upscaler",
    "build_tiny_sd",
    "build_tiny_sd3",
    "build_tiny_sdxl",
    "build_tiny_shapes_sd",
    "tiny_if_scheduler",
    "tiny_clip_tokenizer",
    "tiny_if_unet",
    "tiny_t5_encoder",
    "tiny_t5_tokenizer",
]

SEED = 0
T5_D_MODEL = 32
IF_SAMPLE_SIZE = 16

PROMPT_WORDS = (
    # the course's gpu-profile prompts (course_utils.course.profiles) and the tests' prompts
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
    *,
    sample_size: int = IF_SAMPLE_SIZE,
    text_dim: int = T5_D_MODEL,
    cross_attention_dim: int = 64,
    upscaler: bool = False,
    seed: int = SEED,
):
    """A random-weight IF-stage-I-shaped ``UNet2DConditionModel`` (about 0.6 M parameters).

    As in ``DeepFloyd/IF-I-*``: 3 input channels, 6 output channels (ε and the "learned_range" variance
    interpolation), a plain ResNet first block then ``SimpleCrossAttn`` blocks, T5 hidden states projected by
    ``encoder_hid_proj`` (``encoder_hid_dim`` → ``cross_attention_dim``) and pooled into the timestep embedding
    (``addition_embed_type="text"``), group-norm cross-attention, scale-shift ResNets, GELU.

    ``upscaler=True`` makes it stage II's (``DeepFloyd/IF-II-*``): it also reads the upscaled stage I picture (6
    input channels), and the noise level of that picture's augmentation enters as a class embedding
    (``class_embed_type="timestep"``).
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=6 if upscaler else 3,
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
        class_embed_type="timestep" if upscaler else None,
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
    ``IFPipeline``, so :func:`course_utils.course.registry.resolve` files the folder under the ``if`` family.
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


def build_tiny_if_upscaler(path: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight DeepFloyd-IF-stage-II ``IFSuperResolutionPipeline`` (16 → 32 pixels) to ``path``.

    As ``DeepFloyd/IF-II-L-v1.0``: the U-Net reads the noisy picture and the upscaled stage I picture (6 input
    channels), its noise augmentation level enters as a class embedding (``class_embed_type="timestep"``), and a
    second DDPM scheduler (``image_noising_scheduler``) noises the upscaled input. Saved with its T5, which the
    two-stage study leaves out (stage I's embeddings are reused).
    """
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline

    path = Path(path)
    tokenizer = tiny_t5_tokenizer()
    unet = tiny_if_unet(sample_size=2 * IF_SAMPLE_SIZE, upscaler=True, seed=seed)
    pipeline = IFSuperResolutionPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5_encoder(len(tokenizer), seed=seed),
        unet=unet,
        scheduler=tiny_if_scheduler(),
        image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_shapes_sd(path: str | Path, *, seed: int = SEED) -> Path:
    """The course's miniature Stable Diffusion (``StableDiffusionPipeline``) at test size, random weights: the
    shapes tokenizer, a one-layer ``CLIPTextModel`` (width 32), a VAE of 8/16/16 channels (32×32 → 4×8×8) and a
    U-Net of 32/32 channels (``course_utils.models.shapes_sd.build_test_size_pipeline``), saved to ``path``."""
    from course_utils.models.shapes_sd import build_test_size_pipeline

    pipe = build_test_size_pipeline(seed=seed)
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


# ------------------------------------------------------------------------ Stable Diffusion 2.x, SDXL and SD 3.x
# Same classes and the same kind of configuration as the Hub models the gpu profile names (stabilityai/...), at a
# few hundred thousand weights each. The VAE depths differ from the real ones on purpose (8 for SD, 4 for SDXL,
# 2 × patch 2 for SD3) so that code reading the latent factor from a folder's configs is tested against values
# it could not have guessed.

CLIP_MAX_LENGTH = 77
"""CLIP's context length, to which every Stable Diffusion pipeline pads its prompts."""

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_clip_tokenizer(words: Iterable[str] = PROMPT_WORDS, *, max_length: int = CLIP_MAX_LENGTH):
    """A byte-pair ``CLIPTokenizer`` built offline: every one of ``words`` is one token ``word</w>`` (merges learnt by
    :func:`course_utils.models.shapes_clip.learn_merges`), any other lower-case word splits into letters, anything
    else is ``<|unk|>``. Specials as in OpenAI's CLIP (``<|startoftext|>``, ``<|endoftext|>`` = pad, largest ids)."""
    from transformers import CLIPTokenizer

    from course_utils.models.shapes_clip import learn_merges

    pieces = list(dict.fromkeys(w.lower() for w in words))
    merges = learn_merges(pieces)
    tokens = [*_LETTERS, *(c + "</w>" for c in _LETTERS), *(a + b for a, b in merges)]
    tokens += ["<|unk|>", "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(dict.fromkeys(tokens))},
        merges=merges,
        unk_token="<|unk|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=max_length,
    )


def _tiny_clip_text(cls, tokenizer, *, hidden_size: int = 32, projection_dim: int | None = None, seed: int = SEED):
    """A random-weight CLIP text tower of class ``cls`` (``CLIPTextModel`` or ``CLIPTextModelWithProjection``): two
    layers (the SDXL pipeline reads the penultimate hidden state), 2 heads, GELU, ids matching ``tokenizer``."""
    from transformers import CLIPTextConfig

    extra = {} if projection_dim is None else {"projection_dim": projection_dim}
    torch.manual_seed(seed)
    return cls(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=tokenizer.model_max_length,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
    ).eval()


def _tiny_vae(levels: int, *, seed: int = SEED, **kwargs):
    """A random-weight ``AutoencoderKL`` with ``levels`` levels of 8/16/16/… channels: latent factor 2^(levels-1),
    4 latent channels, one ResNet per level."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(8, *(16,) * (levels - 1)),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        **kwargs,
    ).eval()


def _sd_betas() -> dict:
    """Stable Diffusion's training schedule: scaled-linear β from 0.00085 to 0.012 over T = 1000 steps."""
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def build_tiny_sd(path: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight Stable-Diffusion-2.x-shaped ``StableDiffusionPipeline`` to ``path`` and return it.

    As ``stabilityai/stable-diffusion-2-1``: one CLIP text tower (``CLIPTextModel``, width 32), a U-Net with linear
    projections in its transformers (``use_linear_projection``) and cross-attention at the top level, a VAE with
    latent factor 8, and a ``DDIMScheduler`` predicting ``v`` (SD 2.1's 768-px model). Default size 32×32 (U-Net
    ``sample_size`` 4 × 8); no safety checker.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=32,
        norm_num_groups=8,
    ).eval()
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(4, seed=seed),
        text_encoder=_tiny_clip_text(CLIPTextModel, tokenizer, seed=seed),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            **_sd_betas(),
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="v_prediction",
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def build_tiny_sdxl(path: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight ``StableDiffusionXLPipeline`` to ``path`` and return it.

    As ``stabilityai/stable-diffusion-xl-base-1.0``: two CLIP text towers, the second a
    ``CLIPTextModelWithProjection`` whose pooled, projected output (32) joins the six size/crop numbers (each
    embedded in 8 dimensions) in the U-Net's ``text_time`` embedding (input 6 · 8 + 32 = 80); the U-Net
    cross-attends to both towers' penultimate hidden states side by side (32 + 32 = 64), with no attention at the
    top level and two transformer layers at the second, as SDXL; a VAE that is upcast to float32 to decode
    (``force_upcast``), latent factor 4 here; an ``EulerDiscreteScheduler``. Default size 32×32.
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_clip_tokenizer()
    text_encoder = _tiny_clip_text(CLIPTextModel, tokenizer, seed=seed)
    text_encoder_2 = _tiny_clip_text(CLIPTextModelWithProjection, tokenizer, projection_dim=32, seed=seed + 1)
    time_dim = 8
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=text_encoder.config.hidden_size + text_encoder_2.config.hidden_size,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + text_encoder_2.config.projection_dim,
        norm_num_groups=8,
    ).eval()
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(3, seed=seed, force_upcast=True),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            **_sd_betas(), steps_offset=1, timestep_spacing="leading", prediction_type="epsilon"
        ),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def build_tiny_sd3(path: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight ``StableDiffusion3Pipeline`` to ``path`` and return it.

    As ``stabilityai/stable-diffusion-3.5-medium``: an MMDiT (``SD3Transformer2DModel``, 2 joint blocks, 4 heads of
    8, RMS-normed queries and keys, patches of 2×2 latents) fed by two ``CLIPTextModelWithProjection`` towers (their
    pooled outputs, 32 + 32 = 64, condition the timestep embedding; their hidden states, 32 + 32, are padded to the
    T5's width) and a T5 encoder (:func:`tiny_t5_encoder`, width 64 = ``joint_attention_dim``); a VAE without
    quant convs, with SD3's shift and scaling factors, latent factor 2 (so 2 · 2 = 4 pixels per token side); a
    ``FlowMatchEulerDiscreteScheduler`` with SD3's shift 3. Default size 32×32 (``sample_size`` 16 × 2).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = tiny_clip_tokenizer()
    t5_tokenizer = tiny_t5_tokenizer()
    t5_width = 64
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=t5_width,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        pos_embed_max_size=16,
        qk_norm="rms_norm",
    ).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_tiny_vae(
            2, seed=seed, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035
        ),
        text_encoder=_tiny_clip_text(CLIPTextModelWithProjection, tokenizer, projection_dim=32, seed=seed),
        tokenizer=tokenizer,
        text_encoder_2=_tiny_clip_text(CLIPTextModelWithProjection, tokenizer, projection_dim=32, seed=seed + 1),
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=tiny_t5_encoder(len(t5_tokenizer), d_model=t5_width, seed=seed),
        tokenizer_3=t5_tokenizer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def build_tiny_chat_lm(path: str | Path, *, seed: int = SEED) -> Path:
    """A tiny random-weight causal language model (``GPT2LMHeadModel``, 2 layers of width 32) with the tiny CLIP
    tokenizer and a chat template, saved as a transformers folder: a stand-in for ``google/gemma-3-1b-it`` whose
    answers are garbage, so a captioner that uses it must refuse them and say so."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_clip_tokenizer(max_length=1024)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    path = Path(path)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_clip(path: str | Path, *, seed: int = SEED) -> Path:
    """A tiny random-weight ``CLIPModel`` (32×32 images, patch 8, width 32) with the tiny tokenizer and the course's
    offline image processor: a stand-in for ``openai/clip-vit-base-patch32`` on the ``gpu`` code path."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from course_utils.models.shapes_clip import build_shapes_processor

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": CLIP_MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}  # fmt: skip
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    path = Path(path)
    model.save_pretrained(path)
    build_shapes_processor(tokenizer).save_pretrained(path)
    return path
