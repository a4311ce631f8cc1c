"""Fine-tuning a text-to-image model: DreamBooth, LoRA and full fine-tuning as configurations of one recipe on
the course's one loop (:func:`course_utils.training.loop.fit`).

- **DreamBooth** (Ruiz et al. 2023, "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven
  Generation"): a few instance images of a subject, one instance prompt with a rare token (``"a sks shape"``),
  the whole U-Net trained; with *prior preservation* (their eq. 2) each step also denoises images the base model
  drew for the class prompt (``"a shape"``), weighted by ``λ = prior_loss_weight``::

      L = E‖ε − ε_θ(z_t, t, c_instance)‖² + λ · E‖ε' − ε_θ(z'_t', t', c_class)‖²

  so that the class noun keeps meaning what it meant (less *language drift*).
- **LoRA** (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): the U-Net frozen, each
  adapted ``Linear`` ``W`` gains ``(α / r) · B A`` with ``A ∈ R^{r×k}``, ``B ∈ R^{d×r}``, ``B = 0`` at the start,
  through 🤗 peft (``unet.add_adapter(LoraConfig(...))``). On the instance images it is DreamBooth-LoRA (prior
  preservation optional); on a captioned imagefolder (``train_data_dir``) it is a style or domain LoRA.
- **full**: the whole U-Net on a captioned imagefolder (``metadata.jsonl`` with ``file_name`` and ``text``, as
  ``datasets.load_dataset("imagefolder", data_dir=…)`` reads it).

Every method denoises VAE latents with the base model's schedule (ε- or v-prediction, from its scheduler's
config), holds out a few images for a validation loss with fixed noise and timesteps (its own generator, never the
training one), stops after ``patience`` validations without improvement and ends with the weights of the best
validation. Checkpoints are ``checkpoint-{step}/`` folders of the loop; for LoRA accelerate's save/load hooks
store only the adapter. The run's folder ends with ``pytorch_lora_weights.safetensors`` (LoRA, diffusers' format,
with the adapter's ``lora_alpha`` in its metadata) or a whole ``StableDiffusionPipeline`` folder (DreamBooth,
full), the new words' embeddings (``learned_embeds.safetensors``), ``loss.png`` and ``finetune.json`` (last).

New words: a prompt word the base tokenizer can only spell letter by letter (the course's shapes tokenizer knows
only its world's words; Stable Diffusion's CLIP has pieces for almost anything, ``sks`` included) is added to the
tokenizer with an embedding of its own, drawn from a seeded normal with the existing embeddings' per-dimension
mean and spread, and kept frozen.

Shapes: latents ``(B, C, h, w)`` (``(B, 4, 8, 8)`` for the shapes model); prompt embeddings ``(B, L, D)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from course_utils.errors import CourseError, check_choice
from course_utils.runtime import quiet_loading
from course_utils.sampling.diffusion import q_sample
from course_utils.training.loop import TrainConfig, fit, v_target

__all__ = [
    "IMAGE_SUFFIXES",
    "LORA_FILE",
    "METHODS",
    "RECORD_FILE",
    "WORDS_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "add_words",
    "attach_lora",
    "class_images",
    "embed_prompts",
    "encode_latents",
    "finetune",
    "load_finetuned",
    "new_words",
    "prepare_words",
    "prior_preservation_loss",
    "trainable_parameters",
    "validation_loss",
]

METHODS = ("dreambooth", "lora", "full")
LORA_FILE = "pytorch_lora_weights.safetensors"
WORDS_FILE = "learned_embeds.safetensors"
RECORD_FILE = "finetune.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ADAPTER_FILE = "adapter.safetensors"
"""A LoRA run's checkpoints hold this (the peft state dict) in place of accelerate's full weights."""
REPORTERS = ("none", "tensorboard", "wandb")
VALIDATION_TIMESTEPS = 8
"""Fixed noise levels per validation image: ``t_k = ⌊(k + ½) T / K⌋``, ``k = 0 … K − 1``."""


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run (names as in diffusers' ``train_dreambooth*.py`` / ``train_text_to_image*.py``).

    Attributes:
        method: ``dreambooth`` (whole U-Net, instance images), ``lora`` (adapter; instance images, or
            ``train_data_dir``) or ``full`` (whole U-Net on ``train_data_dir``).
        output_dir: the run's folder (checkpoints, class-image cache, results).
        pretrained_model_name_or_path: a ``StableDiffusionPipeline`` folder or Hub id (resolved by the caller).
        instance_data_dir: a folder of instance images (every image file in it).
        instance_prompt, class_prompt: DreamBooth's prompts.
        with_prior_preservation, prior_loss_weight, num_class_images: prior preservation (class images drawn by
            the base model, cached in ``class_data_dir``, default ``output_dir/class_images``).
        class_inference_steps, class_guidance_scale: how the class images are drawn.
        train_data_dir, caption_column: a captioned imagefolder (``full``, or ``lora`` on captions).
        resolution: image side the model trains at (default: the VAE's ``sample_size``).
        rank, lora_alpha, lora_dropout, target_modules: the LoRA adapter (seed 004's defaults).
        learning_rate, train_batch_size, max_train_steps, max_grad_norm, seed: the loop.
        validation_images: images held out for the validation loss (instance images; at least one).
        validation_steps, patience: validate every this many steps; stop after ``patience`` without improvement.
        checkpointing_steps, checkpoints_total_limit: checkpoint folders.
        report_to: ``none`` or a tracker accelerate logs to (``tensorboard``, ``wandb``).
        hub_token: refused together with a tracker (a tracker logs the configuration, token included).
    """

    method: str
    output_dir: str
    pretrained_model_name_or_path: str
    instance_data_dir: str | None = None
    instance_prompt: str = "a sks shape"
    class_prompt: str = "a shape"
    with_prior_preservation: bool = False
    prior_loss_weight: float = 1.0
    num_class_images: int = 32
    class_data_dir: str | None = None
    class_inference_steps: int = 25
    class_guidance_scale: float = 7.5
    train_data_dir: str | None = None
    caption_column: str = "text"
    resolution: int | None = None
    rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    learning_rate: float = 1e-4
    train_batch_size: int = 1
    max_train_steps: int = 400
    max_grad_norm: float = 1.0
    seed: int = 0
    validation_images: int = 2
    validation_steps: int = 20
    patience: int | None = 2
    checkpointing_steps: int = 50
    checkpoints_total_limit: int | None = 2
    report_to: str = "none"
    hub_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("--report_to value", self.report_to, REPORTERS)
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.report_to != "none" and self.hub_token:
            raise CourseError(
                f"--report_to {self.report_to} with --hub_token is refused: the tracker would log the token;"
                " set HF_TOKEN in the environment (or `huggingface-cli login`) instead"
            )
        if self.method == "full" and self.train_data_dir is None:
            raise CourseError("method full trains on a captioned imagefolder: pass --train_data_dir")
        if self.method == "dreambooth" and self.train_data_dir is not None:
            raise CourseError("method dreambooth trains on instance images; --train_data_dir is for lora and full")
        if self.train_data_dir is not None and self.with_prior_preservation:
            raise CourseError("--with_prior_preservation needs instance images, not --train_data_dir")
        positive = ("rank", "lora_alpha", "learning_rate", "train_batch_size", "max_train_steps",
                    "validation_steps", "checkpointing_steps", "num_class_images", "class_inference_steps",
                    "validation_images")  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise CourseError(f"--{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise CourseError(f"--lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        if self.prior_loss_weight < 0:
            raise CourseError(f"--prior_loss_weight must be ≥ 0, got {self.prior_loss_weight}")
        if not self.instance_prompt.strip() or not self.class_prompt.strip():
            raise CourseError("--instance_prompt and --class_prompt must not be empty")

    @property
    def uses_lora(self) -> bool:
        return self.method == "lora"

    @property
    def uses_instances(self) -> bool:
        return self.train_data_dir is None

    def train_config(self) -> TrainConfig:
        """The loop's settings: AdamW at a constant rate, no EMA, validation and early stopping."""
        return TrainConfig(
            steps=self.max_train_steps,
            batch_size=self.train_batch_size,
            lr=self.learning_rate,
            warmup_steps=0,
            lr_schedule="constant",
            grad_clip=self.max_grad_norm,
            seed=self.seed,
            use_ema=False,
            validation_every=self.validation_steps,
            patience=self.patience,
            checkpoint_every=self.checkpointing_steps,
            checkpoint_dir=self.output_dir,
            checkpoints_total_limit=self.checkpoints_total_limit,
        )

    def signature(self) -> dict:
        """What a resumed run must share with its checkpoints besides the loop's settings."""
        keep = ("method", "pretrained_model_name_or_path", "instance_prompt", "class_prompt", "with_prior_preservation",
                "prior_loss_weight", "num_class_images", "class_inference_steps", "class_guidance_scale",
                "caption_column", "resolution", "rank", "lora_alpha", "lora_dropout", "target_modules",
                "validation_images")  # fmt: skip
        record = {k: v for k, v in asdict(self).items() if k in keep}
        record["target_modules"] = list(self.target_modules)
        record["data"] = str(self.train_data_dir or self.instance_data_dir)
        return {"recipe": "finetune", **record}


@dataclass
class FinetuneResult:
    """What :func:`finetune` leaves: the fine-tuned pipeline (best validation), the loop's record, and where."""

    pipeline: object
    losses: list[float]
    parts: dict[str, list[float]]
    validations: list[list[float]]
    best_step: int | None
    stopped_early: bool
    step: int
    seconds: float
    output_dir: Path
    new_words: list[str]


# ---------------------------------------------------------------------------------------------- the pieces


def prior_preservation_loss(
    pred: torch.Tensor, target: torch.Tensor, *, num_instance: int, prior_loss_weight: float
) -> dict[str, torch.Tensor]:
    """DreamBooth's loss (Ruiz et al. 2023, eq. 2) on a batch whose first ``num_instance`` rows are instance
    examples and the rest class (prior) examples: ``instance + λ · prior``, each a mean squared error.

    ``pred``, ``target``: ``(B, C, h, w)``. Returns ``{"loss", "instance", "prior"}`` (``prior`` is 0 when the batch
    holds no class rows)."""
    if not 0 < num_instance <= len(pred):
        raise CourseError(f"num_instance must lie in 1..{len(pred)}, got {num_instance}")
    instance = torch.nn.functional.mse_loss(pred[:num_instance].float(), target[:num_instance].float())
    if num_instance == len(pred):
        return {"loss": instance, "instance": instance, "prior": torch.zeros_like(instance)}
    prior = torch.nn.functional.mse_loss(pred[num_instance:].float(), target[num_instance:].float())
    return {"loss": instance + prior_loss_weight * prior, "instance": instance, "prior": prior}


def trainable_parameters(module: torch.nn.Module) -> int:
    """How many parameters of ``module`` train (``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def attach_lora(
    unet, *, rank: int, lora_alpha: int, lora_dropout: float, target_modules: Sequence[str], seed: int
) -> object:
    """Freeze ``unet`` and add a peft LoRA adapter to its ``target_modules`` (Hu et al. 2022, eq. 3: ``W x +
    (α/r) B A x``; ``A`` Gaussian, ``B = 0``, so the adapted U-Net starts as the base one). Seeded; the global RNG is
    left as it was. Returns ``unet``."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        init_lora_weights="gaussian",
        target_modules=list(target_modules),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            unet.add_adapter(config)
        except ValueError as err:  # peft: a target module the U-Net does not have
            raise CourseError(f"LoRA target modules {list(target_modules)}: {str(err).splitlines()[0]}") from None
    return unet


def new_words(tokenizer, prompts: Sequence[str]) -> list[str]:
    """Words of ``prompts`` that ``tokenizer`` can only spell one letter per token (it has learnt nothing about
    them), in order of appearance, without repeats."""
    found = []
    for prompt in prompts:
        for word in prompt.lower().split():
            if word in found or word in tokenizer.get_added_vocab():
                continue
            pieces = [piece.replace("</w>", "") for piece in tokenizer.tokenize(word)]
            if len(word) > 1 and all(len(piece) <= 1 for piece in pieces):
                found.append(word)
    return found


def _word_embeddings(text_encoder, words: Sequence[str], *, seed: int) -> dict[str, torch.Tensor]:
    """One embedding per new word: a seeded normal draw with the vocabulary's per-dimension mean and std."""
    table = text_encoder.get_input_embeddings().weight.detach().float()
    mean, std = table.mean(0), table.std(0)
    generator = torch.Generator().manual_seed(seed)
    return {word: (mean + std * torch.randn(table.shape[1], generator=generator)).to(table.dtype) for word in words}


def prepare_words(pipe, prompts: Sequence[str], *, seed: int) -> dict[str, torch.Tensor]:
    """Give ``pipe`` every :func:`new_words` of ``prompts``, each with an embedding of its own (a seeded normal
    draw with the vocabulary's per-dimension mean and std); return them (word → embedding)."""
    embeddings = _word_embeddings(pipe.text_encoder, new_words(pipe.tokenizer, prompts), seed=seed)
    add_words(pipe, embeddings)
    return embeddings


def add_words(pipe, embeddings: dict[str, torch.Tensor]) -> None:
    """Add ``embeddings`` (word → vector) to ``pipe``'s tokenizer and text encoder with diffusers'
    ``load_textual_inversion`` (the tokenizer gains the words, the embedding table the rows)."""
    from transformers.utils import logging as transformers_logging

    if not embeddings:
        return
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its note on how the resized table's new rows are drawn: ours are set
    try:
        with quiet_loading():
            pipe.load_textual_inversion([{word: vector} for word, vector in embeddings.items()], token=list(embeddings))
    finally:
        transformers_logging.set_verbosity(level)


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CourseError(f"--instance_data_dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CourseError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _to_tensor(images, resolution: int) -> torch.Tensor:
    """PIL images → ``(N, 3, S, S)`` in ``[-1, 1]``: the shorter side resized to ``S``, centre-cropped."""
    from PIL import Image

    out = []
    for image in images:
        image = image.convert("RGB")
        scale = resolution / min(image.size)
        if scale != 1:
            size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        out.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 127.5 - 1.0


def _decode(file: Path):
    """The image in ``file``, fully decoded; a corrupt, truncated or not-an-image file is one line naming it."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.load()
            return image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # PIL's ways of failing
        raise CourseError(f"{file}: not a readable image ({err})") from None


def _read_images(files: Sequence[Path], resolution: int) -> torch.Tensor:
    return _to_tensor([_decode(file) for file in files], resolution)


def _read_metadata(folder: Path, caption_column: str) -> list[tuple[Path, str]]:
    """``(image file, caption)`` per line of an imagefolder's ``metadata.jsonl``, each line checked: a JSON object
    with ``file_name`` (a file of the folder) and a non-empty ``caption_column``; anything else is one line
    naming the line."""
    file = folder / "metadata.jsonl"
    rows = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise CourseError(f"{file} is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file} line {number}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise CourseError(f"{where} is not JSON ({err.msg} at column {err.colno}): one object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise CourseError(f'{where} has no file_name: each line is {{"file_name": …, "{caption_column}": …}}')
        if caption_column not in row:
            found = ", ".join(k for k in row if k != "file_name") or "none"
            raise CourseError(
                f"--caption_column {caption_column!r} is not a column of {folder} ({where} has {found});"
                " pass --caption_column"
            )
        text = str(row[caption_column] or "")
        if not text.strip():
            raise CourseError(f"{where}: empty caption in {caption_column!r}")
        image = folder / row["file_name"]
        if not image.is_file():
            raise CourseError(f"{where}: no image {row['file_name']!r} in {folder}")
        rows.append((image, text))
    if not rows:
        raise CourseError(f"{file} lists no images")
    return rows


def _read_imagefolder(folder: str, caption_column: str, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """Images and captions of a Hugging Face imagefolder (``metadata.jsonl`` with ``file_name`` and the caption
    column, as ``datasets.load_dataset("imagefolder", data_dir=…)`` reads it), every line and image checked."""
    root = Path(folder)
    if not root.is_dir():
        raise CourseError(f"--train_data_dir {folder} is not a folder")
    if not (root / "metadata.jsonl").is_file():
        coco = sorted(p.name for p in root.glob("*.json"))
        hint = (
            f"; {', '.join(coco)} may be COCO annotations: convert them with python -m course_utils.data.coco"
            if coco else ""
        )  # fmt: skip
        raise CourseError(f"--train_data_dir {folder} has no metadata.jsonl (file_name, {caption_column}){hint}")
    for image in dict.fromkeys(image for image, _ in _read_metadata(root, caption_column)):
        _decode(image)  # a corrupt or truncated file is named here, not deep inside datasets
    import datasets

    try:
        with quiet_loading():
            datasets.disable_progress_bars()
            data = datasets.load_dataset("imagefolder", data_dir=folder, split="train")
        captions = [str(text) for text in data[caption_column]]
        images = data["image"]
    except Exception as err:  # what the line checks above cannot foresee
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CourseError(f"cannot read {folder} as an imagefolder: {type(err).__name__}: {first}") from None
    return _to_tensor(images, resolution), captions


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 3, S, S)`` → scaled latents ``(N, C, S/f, S/f)`` (the posterior's mean), in chunks."""
    out = []
    for chunk in images.split(32):
        posterior = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        out.append(posterior.mode().float().cpu())
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def embed_prompts(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """``τ(y)`` ``(N, L, D)``: the text encoder's last hidden states, padded to the tokenizer's length, as the
    pipeline computes them (no attention mask)."""
    ids = pipe.tokenizer(
        list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0].float().cpu()


def class_images(pipe, config: FinetuneConfig, folder: Path, *, batch_size: int = 8, show_progress: bool = True):
    """The prior-preservation images: ``num_class_images`` drawn by the base ``pipe`` for the class prompt, image
    ``i`` from a generator seeded with ``(seed, i)``, in batches fixed by index, each PNG written to a temporary name
    and renamed. A cache: images already there (with a matching ``class_images.json``) are kept, so an interrupted
    run continues where it stopped and ends with the images of an uninterrupted one. Returns the files."""
    from PIL import Image
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "prompt": config.class_prompt,
        "model": config.pretrained_model_name_or_path,
        "steps": config.class_inference_steps,
        "guidance_scale": config.class_guidance_scale,
        "seed": config.seed,
    }
    manifest = folder / "class_images.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != settings:
        raise CourseError(
            f"{folder} holds class images drawn with other settings ({manifest}); delete it or pass another"
            " --class_data_dir"
        )
    manifest.write_text(json.dumps(settings, indent=1) + "\n")
    files = [folder / f"class_{i:04d}.png" for i in range(config.num_class_images)]
    starts = [s for s in range(0, len(files), batch_size) if not all(f.is_file() for f in files[s : s + batch_size])]
    for start in tqdm(starts, desc="class images", disable=not show_progress or not starts):
        batch = list(range(start, min(start + batch_size, len(files))))
        generators = [torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, i]).generate_state(1)[0]))
                      for i in batch]  # fmt: skip
        images = pipe(
            [config.class_prompt] * len(batch),
            num_inference_steps=config.class_inference_steps,
            guidance_scale=config.class_guidance_scale,
            generator=generators,
            output_type="np",
        ).images
        for i, image in zip(batch, images, strict=True):
            tmp = files[i].with_suffix(".tmp.png")
            Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp)
            os.replace(tmp, files[i])
    return files


@torch.no_grad()
def validation_loss(
    unet, latents: torch.Tensor, embeds: torch.Tensor, *, alphas_cumprod: torch.Tensor, prediction_type: str,
    seed: int, reduction: str = "mean",
) -> float | torch.Tensor:  # fmt: skip
    """The denoising loss on held-out ``latents`` ``(V, C, h, w)`` with their ``embeds`` ``(V, L, D)`` at
    :data:`VALIDATION_TIMESTEPS` fixed noise levels per image, with noise from a generator seeded with ``seed``
    (created here: the training generator and the global RNG are never touched), so it depends on the weights
    alone and two validations of the same weights agree exactly. ``reduction="mean"`` gives the mean squared error
    as a float; ``"none"`` each (image, level) pair's mean squared error ``(V·K,)``, image by image, to take an
    interval over."""
    check_choice("reduction", reduction, ("mean", "none"))
    k, num_timesteps = VALIDATION_TIMESTEPS, alphas_cumprod.shape[0]
    t = ((torch.arange(k) + 0.5) * num_timesteps / k).long().repeat(len(latents))  # (V·K,)
    z0 = latents.repeat_interleave(k, dim=0)
    cond = embeds.repeat_interleave(k, dim=0)
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    device = next(unet.parameters()).device
    z0, cond, t, eps = z0.to(device), cond.to(device), t.to(device), eps.to(device)
    abar = alphas_cumprod.to(device)
    pred = unet(q_sample(z0, t, eps, alphas_cumprod=abar), t, encoder_hidden_states=cond).sample
    target = eps if prediction_type == "epsilon" else v_target(z0, t, eps, alphas_cumprod=abar)
    if reduction == "mean":
        return float(torch.nn.functional.mse_loss(pred.float(), target.float()))
    return ((pred.float() - target.float()) ** 2).flatten(1).mean(1).cpu()  # (V·K,)


def _split(n: int, held: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded ``(train, validation)`` split of ``range(n)`` holding out ``held`` (at least one left to train)."""
    if n < 2:
        raise CourseError(f"fine-tuning needs at least 2 images (one is held out for validation), got {n}")
    held = min(held, n - 1)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return sorted(order[held:]), sorted(order[:held])


# ---------------------------------------------------------------------------------------------- the recipe


@dataclass
class _Data:
    """Latents and prompt embeddings, split; class latents for prior preservation."""

    train: torch.Tensor
    train_embeds: torch.Tensor
    val: torch.Tensor
    val_embeds: torch.Tensor
    prior: torch.Tensor | None = None
    prior_embeds: torch.Tensor | None = None


def _prepare_data(pipe, config: FinetuneConfig, resolution: int, show_progress: bool) -> _Data:
    if config.uses_instances:
        if config.instance_data_dir is None:
            raise CourseError("pass --instance_data_dir (a folder of instance images) or --train_data_dir")
        images = _read_images(_list_images(Path(config.instance_data_dir)), resolution)
        prompts = [config.instance_prompt] * len(images)
    else:
        images, prompts = _read_imagefolder(config.train_data_dir, config.caption_column, resolution)
    train, val = _split(len(images), config.validation_images, config.seed)
    latents, embeds = encode_latents(pipe.vae, images), embed_prompts(pipe, prompts)
    data = _Data(latents[train], embeds[train], latents[val], embeds[val])
    if config.with_prior_preservation:
        folder = Path(config.class_data_dir or Path(config.output_dir) / "class_images")
        files = class_images(pipe, config, folder, show_progress=show_progress)
        data.prior = encode_latents(pipe.vae, _read_images(files, resolution))
        data.prior_embeds = embed_prompts(pipe, [config.class_prompt]).expand(len(files), -1, -1).contiguous()
    return data


def _adapter_hooks(accelerator) -> None:
    """Checkpoints of a LoRA run hold the adapter only: accelerate's save hook writes the peft state dict and
    takes the full weights off the list; the load hook puts the adapter back into the model."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    def save(models, weights, output_dir):
        for model in models:
            state = get_peft_model_state_dict(accelerator.unwrap_model(model))
            tensors = {k: v.detach().contiguous() for k, v in state.items()}
            save_file(tensors, os.path.join(output_dir, ADAPTER_FILE))
            if weights:
                weights.pop()

    def load(models, input_dir):
        while models:
            model = models.pop()
            state = load_file(os.path.join(input_dir, ADAPTER_FILE))
            result = set_peft_model_state_dict(accelerator.unwrap_model(model), state)
            if getattr(result, "unexpected_keys", None):
                raise CourseError(f"{input_dir}: the adapter does not fit this U-Net ({result.unexpected_keys[:3]} …)")

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def load_base(path: str, **kwargs):
    """The base ``StableDiffusionPipeline`` (no safety checker, progress bar off); a missing folder is one line."""
    from diffusers import StableDiffusionPipeline

    try:
        with quiet_loading():
            pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CourseError(f"could not load a Stable Diffusion pipeline from {path}: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def finetune(config: FinetuneConfig, *, show_progress: bool = True, pipe=None) -> FinetuneResult:
    """Run ``config`` (see the module docstring): resumes from the newest checkpoint in ``output_dir``, ends with
    the best validation's weights saved there. ``pipe``: the base pipeline, if already loaded (it is changed)."""
    from accelerate import Accelerator

    out = Path(config.output_dir)
    accelerator = Accelerator(log_with=None if config.report_to == "none" else config.report_to, project_dir=str(out))
    pipe = (pipe or load_base(config.pretrained_model_name_or_path)).to(accelerator.device)
    unet = pipe.unet
    for module in (pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    resolution = config.resolution or pipe.vae.config.sample_size
    # 1) new words, 2) latents, embeddings and class images, 3) the model that trains
    embeddings = prepare_words(
        pipe, [config.instance_prompt, config.class_prompt] if config.uses_instances else [], seed=config.seed
    )
    words = list(embeddings)
    data = _prepare_data(pipe, config, resolution, show_progress)
    out.mkdir(parents=True, exist_ok=True)  # only once the data has been read: a bad image leaves no folder
    if config.uses_lora:
        attach_lora(unet, rank=config.rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                    target_modules=config.target_modules, seed=config.seed)  # fmt: skip
    else:
        unet.requires_grad_(True)
    scheduler = pipe.scheduler
    alphas_cumprod = scheduler.alphas_cumprod.float()
    prediction_type = scheduler.config.prediction_type
    check_choice("the scheduler's prediction type", prediction_type, ("epsilon", "v_prediction"))
    train_config = config.train_config()
    b = config.train_batch_size

    def loss_fn(net, gen: torch.Generator) -> dict[str, torch.Tensor]:
        # 1) instance (and class) rows, 2) t ~ U{0..T-1}, ε, z_t, 3) instance loss + λ · prior loss
        idx = torch.randint(0, len(data.train), (b,), generator=gen)
        z0, cond = data.train[idx], data.train_embeds[idx]
        if data.prior is not None:
            jdx = torch.randint(0, len(data.prior), (b,), generator=gen)
            z0, cond = torch.cat([z0, data.prior[jdx]]), torch.cat([cond, data.prior_embeds[jdx]])
        t = torch.randint(0, alphas_cumprod.shape[0], (len(z0),), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        device = next(net.parameters()).device
        z0, cond, t, eps = z0.to(device), cond.to(device), t.to(device), eps.to(device)
        abar = alphas_cumprod.to(device)
        pred = net(q_sample(z0, t, eps, alphas_cumprod=abar), t, encoder_hidden_states=cond).sample
        target = eps if prediction_type == "epsilon" else v_target(z0, t, eps, alphas_cumprod=abar)
        return prior_preservation_loss(pred, target, num_instance=b, prior_loss_weight=config.prior_loss_weight)

    def validate(net) -> float:
        return validation_loss(net, data.val, data.val_embeds, alphas_cumprod=alphas_cumprod,
                               prediction_type=prediction_type, seed=config.seed + 1)  # fmt: skip

    if config.uses_lora:
        _adapter_hooks(accelerator)
    trained, losses = fit(
        unet,
        loss_fn=loss_fn,
        config=train_config,
        description=f"finetune {config.method}",
        accelerator=accelerator,
        signature={**config.signature(), "new_words": words},
        show_progress=show_progress,
        validate=validate,
    )
    pipe.unet = trained.eval()
    from course_utils.training.checkpoints import read_progress

    progress = read_progress(out)
    if accelerator.is_main_process:
        _save(pipe, config, out, embeddings, progress)
        if config.report_to != "none":
            _report(accelerator, config, progress)
    return FinetuneResult(
        pipeline=pipe,
        losses=losses,
        parts=progress.parts,
        validations=progress.validations,
        best_step=progress.best_step,
        stopped_early=progress.stopped_early,
        step=progress.step,
        seconds=progress.seconds,
        output_dir=out,
        new_words=words,
    )


def _save(pipe, config: FinetuneConfig, out: Path, embeddings: dict[str, torch.Tensor], progress) -> None:
    """The results, ``finetune.json`` last (its presence says the folder is complete)."""
    from safetensors.torch import save_file

    (out / RECORD_FILE).unlink(missing_ok=True)
    if config.uses_lora:
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
        metadata = pipe.unet.peft_config["default"].to_dict()
        metadata["target_modules"] = sorted(metadata["target_modules"])  # a set in peft: one order, the same bytes
        type(pipe).save_lora_weights(out, unet_lora_layers=layers, unet_lora_adapter_metadata=metadata)
    else:
        with quiet_loading():  # transformers' "Writing model shards" bar would land in a notebook's output
            pipe.save_pretrained(out)
    if embeddings:
        save_file({w: v.detach().contiguous() for w, v in embeddings.items()}, str(out / WORDS_FILE))
    _loss_figure(progress, config, out / "loss.png")
    record = {
        "method": config.method,
        "base": config.pretrained_model_name_or_path,
        "step": progress.step,
        "steps": config.max_train_steps,
        "stopped_early": progress.stopped_early,
        "best_step": progress.best_step,
        "validations": progress.validations,
        "seconds": progress.seconds,
        "runs": progress.runs,
        "new_words": list(embeddings),
        "config": {k: v for k, v in config.signature().items()},
        "trainable_parameters": trainable_parameters(pipe.unet) if config.uses_lora else None,
    }
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _loss_figure(progress, config: FinetuneConfig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from course_utils.plotting import finetune_curves

    figure = finetune_curves(
        progress.losses, parts=progress.parts, validations=progress.validations, best_step=progress.best_step,
        title=f"{config.method}: training and validation loss",
    )  # fmt: skip
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _report(accelerator, config: FinetuneConfig, progress) -> None:
    """Send the run's losses to the tracker (``--report_to``); the configuration goes without the token."""
    settings = {k: v for k, v in asdict(replace(config, hub_token=None)).items() if k != "hub_token"}
    settings["target_modules"] = ",".join(config.target_modules)
    accelerator.init_trackers("finetune", config={k: str(v) for k, v in settings.items()})
    for step, loss in enumerate(progress.losses, start=1):
        row = {"loss": loss, **{name: values[step - 1] for name, values in progress.parts.items()}}
        accelerator.log(row, step=step)
    for step, value in progress.validations:
        accelerator.log({"validation_loss": value}, step=int(step))
    accelerator.end_training()


def load_finetuned(folder: str | Path, *, base=None):
    """A fine-tuning run's pipeline in a fresh process: ``base`` (a loaded pipeline or its folder; default the
    run's base) with the new words (``pipe.load_textual_inversion``) and the adapter (``pipe.load_lora_weights``), or
    the saved ``StableDiffusionPipeline`` folder of a DreamBooth / full run."""
    from safetensors.torch import load_file

    folder = Path(folder)
    record_file = folder / RECORD_FILE
    if not record_file.is_file():
        raise CourseError(f"{folder} holds no finished fine-tuning run (no {RECORD_FILE})")
    record = json.loads(record_file.read_text())
    if record["method"] != "lora":
        return load_base(str(folder))
    pipe = base if base is not None and not isinstance(base, (str, Path)) else load_base(str(base or record["base"]))
    if (folder / WORDS_FILE).is_file():
        add_words(pipe, load_file(str(folder / WORDS_FILE)))
    with quiet_loading():
        pipe.load_lora_weights(str(folder), weight_name=LORA_FILE)
    return pipe
