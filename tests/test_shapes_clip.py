"""The shapes CLIP: an offline CLIPTokenizer, CLIPProcessor and CLIPModel that load as openai/clip-vit-base-patch32."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor, CLIPTextModel, CLIPTokenizer

from course_utils.data import shapes
from course_utils.errors import CourseError
from course_utils.models.shapes_clip import (
    CAPTION_WORDS,
    IMAGE_MEAN,
    IMAGE_STD,
    LONGEST_CAPTION_TOKENS,
    UNK_TOKEN,
    CLIPConfigSmall,
    build_shapes_clip,
    build_shapes_processor,
    build_shapes_tokenizer,
    clip_score,
    contrastive_loss,
    encode_captions,
    learn_merges,
    load_shapes_clip,
    pixel_values,
    retrieval_chance,
    retrieval_top1,
    save_shapes_clip,
    train_shapes_clip,
)
from course_utils.training.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

TINY = CLIPConfigSmall(
    text_hidden=32, text_layers=1, text_heads=2, vision_hidden=32, vision_layers=1, vision_heads=2, projection_dim=32
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_shapes_tokenizer()


@pytest.fixture(scope="module")
def processor(tokenizer):
    return build_shapes_processor(tokenizer)


@pytest.fixture(scope="module")
def data():
    return shapes.make_dataset(160, seed=7)


def random_captions(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [shapes.caption(shapes.sample_scene(rng)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- tokenizer


def test_learn_merges_by_hand():
    # counts tie at 1: the alphabetically first pair wins ("b" sorts before "b</w>")
    assert learn_merges(["ab", "abc"]) == [("a", "b"), ("a", "b</w>"), ("ab", "c</w>")]
    with pytest.raises(CourseError):
        learn_merges(["Red"])


def test_every_caption_word_is_one_token(tokenizer):
    captions = random_captions(400, seed=0)
    assert {w for c in captions for w in c.split()} <= set(CAPTION_WORDS)
    enc = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length)
    unk = tokenizer.convert_tokens_to_ids(UNK_TOKEN)
    for text, ids in zip(captions, enc["input_ids"], strict=True):
        assert unk not in ids and len(ids) == 32
        tokens = tokenizer.convert_ids_to_tokens(ids)
        n = len(text.split())
        assert tokens[0] == "<|startoftext|>" and tokens[n + 1] == "<|endoftext|>"
        assert tokens[1 : n + 1] == [w + "</w>" for w in text.split()]
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    longest = max(len(ids) for ids in tokenizer(captions)["input_ids"])
    assert longest <= LONGEST_CAPTION_TOKENS
    # end of text has the largest id (pooling by argmax, as older CLIP configs do, finds it) and pads
    assert tokenizer.eos_token_id == len(tokenizer) - 1 == tokenizer.pad_token_id


def test_tokenizer_round_trips_through_files(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    captions = random_captions(100, seed=1)
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.model_max_length == 32 and loaded.unk_token == UNK_TOKEN
    assert loaded(captions)["input_ids"] == tokenizer(captions)["input_ids"]


def test_unknown_word_is_refused_in_one_line(tokenizer, processor, data):
    bad = "a small red cat on a grey background"
    assert tokenizer.tokenize(bad)[3] != UNK_TOKEN  # byte pairs would split "cat" silently ...
    with pytest.raises(CourseError, match="'cat'") as err:  # ... so the course refuses it
        encode_captions(tokenizer, [data.captions[0], bad])
    assert "\n" not in str(err.value)
    with pytest.raises(CourseError, match="at most 30 fit"):
        encode_captions(tokenizer, [" ".join(["red"] * 31)])
    model = build_shapes_clip(TINY, tokenizer)
    with pytest.raises(CourseError, match="'cat'"):
        clip_score(model, processor, data.images[:1], [bad])
    with pytest.raises(CourseError, match="'cat'"):
        train_shapes_clip(model, data.images[:2], [bad, bad], tokenizer=tokenizer, config=TrainConfig(steps=1))


# ---------------------------------------------------------------------------------------------- images


def test_processor_takes_arrays_pil_and_tensors(processor, data):
    images = data.images[:5]
    expected = pixel_values(images)  # what training feeds the model
    from_array = processor(images=images, return_tensors="pt")["pixel_values"]
    from_pil = processor(images=[Image.fromarray(x) for x in images], return_tensors="pt")["pixel_values"]
    assert from_array.shape == (5, 3, 32, 32)
    torch.testing.assert_close(from_array, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(from_pil, expected, atol=1e-6, rtol=0)
    # OpenAI's normalisation: a white pixel becomes (1 - mean) / std
    white = np.full((1, 32, 32, 3), 255, np.uint8)
    got = processor(images=white, return_tensors="pt")["pixel_values"][0, :, 0, 0]
    torch.testing.assert_close(got, (1 - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD))
    # a larger picture is resized to 32 × 32, not cropped to a corner
    big = np.repeat(np.repeat(images[:1], 2, axis=1), 2, axis=2)
    assert processor(images=big, return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 32)


# ---------------------------------------------------------------------------------------------- model


def test_config_checks(tokenizer):
    with pytest.raises(CourseError, match="multiple"):
        CLIPConfigSmall(text_hidden=30, text_heads=4)
    with pytest.raises(CourseError, match="patch_size"):
        CLIPConfigSmall(patch_size=5)
    with pytest.raises(CourseError, match="max_position_embeddings"):
        build_shapes_clip(CLIPConfigSmall(max_position_embeddings=16), tokenizer)
    with pytest.raises(CourseError, match="max_length"):
        build_shapes_tokenizer(max_length=12)


def test_saves_and_loads_like_openai_clip(tokenizer, processor, data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = build_shapes_clip(CLIPConfigSmall(), tokenizer).eval()
    path = save_shapes_clip(model, processor, tmp_path / "shapes-clip")
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    for name in ("vocab.json", "merges.txt", "preprocessor_config.json", "tokenizer.json"):
        assert (path / name).is_file(), name

    loaded, loaded_processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    inputs = loaded_processor(
        text=data.captions[:6], images=list(data.images[:6]), return_tensors="pt", padding="max_length"
    )
    assert inputs["input_ids"].shape == (6, 32) and inputs["pixel_values"].shape == (6, 3, 32, 32)
    with torch.no_grad():
        before, after = model(**inputs), loaded(**inputs)
        text = loaded.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        image = loaded.get_image_features(pixel_values=inputs["pixel_values"])
    torch.testing.assert_close(after.text_embeds, before.text_embeds, atol=0, rtol=0)
    torch.testing.assert_close(after.image_embeds, before.image_embeds, atol=0, rtol=0)
    text = text if isinstance(text, torch.Tensor) else text.pooler_output  # transformers 4 / 5
    image = image if isinstance(image, torch.Tensor) else image.pooler_output
    assert text.shape == image.shape == (6, 64)

    # Stable Diffusion's text encoder: the text tower alone, from the same folder, one vector per position
    encoder = CLIPTextModel.from_pretrained(path).eval()
    with torch.no_grad():
        hidden = encoder(inputs["input_ids"]).last_hidden_state
    assert hidden.shape == (6, 32, 64)
    course_model, course_processor = load_shapes_clip(path)
    assert not course_model.training and isinstance(course_processor, CLIPProcessor)
    with pytest.raises(CourseError, match="not a saved shapes CLIP"):
        load_shapes_clip(tmp_path / "nowhere")
    # the words-only files (vocab.json + merges.txt) rebuild the same tokenizer
    (path / "tokenizer.json").unlink()
    assert CLIPTokenizer.from_pretrained(path)(data.captions)["input_ids"] == tokenizer(data.captions)["input_ids"]


# ---------------------------------------------------------------------------------------------- training


def test_contrastive_loss_is_clips_and_shares_duplicates(tokenizer, processor, data):
    model = build_shapes_clip(TINY, tokenizer).eval()
    inputs = processor(text=data.captions[:8], images=list(data.images[:8]), return_tensors="pt", padding=True)
    assert len(set(data.captions[:8])) == 8
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        ours = contrastive_loss(out.text_embeds, out.image_embeds, model.logit_scale)
        grouped = contrastive_loss(out.text_embeds, out.image_embeds, model.logit_scale, groups=torch.arange(8))
    torch.testing.assert_close(ours, out.loss)
    torch.testing.assert_close(grouped, out.loss)

    # items 0 and 1 share a caption: swapping their images changes nothing for the grouped loss,
    # while one-hot targets (CLIP's) would call one of them wrong
    t, v = torch.nn.functional.normalize(torch.randn(2, 6, 16), dim=-1)
    swapped = v[[1, 0, 2, 3, 4, 5]]
    groups = torch.tensor([0, 0, 1, 2, 3, 4])
    scale = torch.tensor(3.0)
    torch.testing.assert_close(
        contrastive_loss(t, v, scale, groups=groups), contrastive_loss(t, swapped, scale, groups=groups)
    )
    assert not torch.allclose(contrastive_loss(t, v, scale), contrastive_loss(t, swapped, scale))


def test_training_lowers_the_loss_reproducibly(tokenizer, data):
    config = TrainConfig(steps=40, batch_size=32, lr=3e-3, warmup_steps=5, ema_decay=0.9, seed=3)

    def run():
        torch.manual_seed(0)
        model = build_shapes_clip(TINY, tokenizer)
        return train_shapes_clip(model, data.images, data.captions, tokenizer=tokenizer, config=config)

    ema, losses = run()
    _, again = run()
    assert isinstance(ema, CLIPModel) and len(losses) == 40
    assert losses == again
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3, (losses[:10], losses[-10:])
    with pytest.raises(CourseError, match="uint8"):
        train_shapes_clip(ema, data.images[:, :16, :16], data.captions, tokenizer=tokenizer, config=config)


# ---------------------------------------------------------------------------------------------- measuring


class ColourCLIP(torch.nn.Module):
    """Hand-made features: a caption is the one-hot of its (first) colour word; an image is the one-hot of the
    colour nearest its centre pixel, minus 0.2 in every other colour (so mismatches have a negative cosine)."""

    def __init__(self, tokenizer):
        super().__init__()
        self.colour_ids = torch.tensor(tokenizer.convert_tokens_to_ids([c + "</w>" for c in shapes.COLOURS]))
        self.rgb = torch.tensor([shapes.COLOUR_RGB[c] for c in shapes.COLOURS], dtype=torch.float32)

    def get_text_features(self, input_ids, attention_mask=None):
        hit = (input_ids[:, :, None] == self.colour_ids).any(dim=1)  # (N, colours)
        return hit.float()

    def get_image_features(self, pixel_values):
        mean, std = torch.tensor(IMAGE_MEAN).view(1, 3), torch.tensor(IMAGE_STD).view(1, 3)
        centre = (pixel_values[:, :, 16, 16] * std + mean) * 255  # (N, 3)
        nearest = torch.cdist(centre, self.rgb).argmin(dim=1)
        return torch.nn.functional.one_hot(nearest, len(shapes.COLOURS)).float() * 1.2 - 0.2


def test_clip_score_and_retrieval_on_hand_made_features(tokenizer, processor):
    model = ColourCLIP(tokenizer)
    colours = ["red", "green", "blue", "yellow", "purple", "white", "red"]  # a duplicate caption at the end
    images = np.stack([np.full((32, 32, 3), shapes.COLOUR_RGB[c], np.uint8) for c in colours])
    captions = [f"a large {c} square in the centre on a grey background" for c in colours]

    matched = clip_score(model, processor, images, captions)
    torch.testing.assert_close(matched, torch.full((7,), 100 / 1.2**0.5))
    mismatched = clip_score(model, processor, images, captions[2:] + captions[:2])  # no colour meets its own
    assert mismatched.shape == (7,) and (mismatched == 0).all()  # negative cosines are clipped at 0
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1  # the diffusion models' images
    torch.testing.assert_close(clip_score(model, processor, tensors, captions), matched)

    assert retrieval_top1(model, processor, images, captions) == 1.0  # the two red images both count
    # images moved two places: every caption finds an image of its colour, but under another caption
    assert retrieval_top1(model, processor, np.roll(images, -2, axis=0), captions) == 0.0
    assert retrieval_chance(captions) == pytest.approx((5 * 1 + 2 * 2) / 7 / 7)
    assert retrieval_chance(captions[:6]) == pytest.approx(1 / 6)


def test_brief_training_beats_an_untrained_model(tokenizer, processor, data):
    torch.manual_seed(0)
    untrained = build_shapes_clip(TINY, tokenizer).eval()
    config = TrainConfig(steps=60, batch_size=64, lr=3e-3, warmup_steps=5, ema_decay=0.8, seed=0)
    trained, _ = train_shapes_clip(
        build_shapes_clip(TINY, tokenizer), data.images, data.captions, tokenizer=tokenizer, config=config
    )
    images, captions = data.images[:64], data.captions[:64]
    shuffled = captions[1:] + captions[:1]

    def gap(model):
        return float(
            (clip_score(model, processor, images, captions) - clip_score(model, processor, images, shuffled)).mean()
        )

    assert gap(trained) > gap(untrained) + 20  # measured: about 60 against about 1 (seeds 0-2)
    top1 = retrieval_top1(trained, processor, images, captions)
    assert top1 >= 0.15 and top1 > retrieval_top1(untrained, processor, images, captions) + 0.1  # chance: 1/64
