"""The `lengths` snippet (docs/sequence-lengths.md) against the real Qwen-VL processors: `with_lengths` gives, row
for row, the number of input_ids that `processor.apply_chat_template(to_qwen_messages(row), tokenize=True)` gives
with the decoded image, and decodes no image to do it.

The rows are a `small` build of a generated mirror whose images have eight sizes, loaded the way users load them;
the processors are built offline (tests/tiny_qwen.py): a BPE tokenizer trained here, the official chat templates,
transformers' own Qwen2-VL image processor."""

import glob
import io
import os
from collections import Counter

import datasets
import PIL.Image
import pytest
from helpers import ROOT, make_mirror, run_readme_snippets
from tiny_qwen import QWEN3_VL_SIZE, tiny_processor, tiny_qwen2_vl_processor, train_tokenizer

import build
from arr_coc.pipeline.images import inspect_image

# COCO-like photos (landscape, square, portrait, wide) and small images that every bound below upscales.
SIZES = [(640, 480), (612, 612), (500, 375), (427, 640), (640, 301), (200, 150), (300, 40), (64, 48)]
QUESTIONS = 12  # VQAv2 and GQA rows of 12 turn pairs
REAL_COCO = os.path.join(ROOT, "..", "shared", "realdata", "coco")
# Two bounds besides Qwen3-VL's released ones, each with images below min_pixels and above max_pixels.
CAPS = {"capped 200-300 tokens": dict(min_pixels=200 * 32 * 32, max_pixels=300 * 32 * 32),
        "capped 4-16 tokens": dict(min_pixels=4 * 32 * 32, max_pixels=16 * 32 * 32)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("lengths-mirror")
    make_mirror(mirror, images_per_split=5, questions_per_image=QUESTIONS, image_sizes=SIZES)
    path = tmp_path_factory.mktemp("lengths-repo")
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def splits(repo):
    return datasets.load_dataset(str(repo), "small")


@pytest.fixture(scope="module")
def decoded(splits):
    """Every row with its PIL image, per split: the processor's input."""
    return {name: list(split) for name, split in splits.items()}


@pytest.fixture(scope="module")
def card():
    return run_readme_snippets("qwen", "lengths")


@pytest.fixture(scope="module")
def tokenizer(splits):
    return train_tokenizer([turn["content"] for conversation in splits["train"]["conversations"] for turn in conversation])


@pytest.fixture(scope="module")
def processors(card, tokenizer):
    """name -> processor: Qwen3-VL at its released pixel bounds and after the card's cap_pixels to two others;
    Qwen2-VL and Qwen2.5-VL at their image processor's defaults."""
    released = tiny_processor(tokenizer)
    released.image_processor.size = dict(QWEN3_VL_SIZE)
    made = {"Qwen3-VL released": released}
    for name, bounds in CAPS.items():
        made[name] = tiny_processor(tokenizer)
        card["cap_pixels"](made[name], **bounds)
    made["Qwen2-VL"] = tiny_qwen2_vl_processor(tokenizer, "2")
    made["Qwen2.5-VL"] = tiny_qwen2_vl_processor(tokenizer, "2.5")
    return made


def through_processor(processor, card, rows) -> tuple[list, list]:
    """(input_ids count, pixels after the processor's resize) of each row, the image decoded and processed."""
    lengths, resized = [], []
    for row in rows:
        inputs = processor.apply_chat_template(card["to_qwen_messages"](row), tokenize=True, return_dict=True)
        lengths.append(len(inputs["input_ids"][0]))
        t, h, w = (int(v) for v in inputs["image_grid_thw"][0])
        resized.append(t * h * w * processor.image_processor.patch_size ** 2)
    return lengths, resized


@pytest.fixture
def decodes(monkeypatch):
    """Counts image decodes: PIL.Image.open (any image read) and datasets' Image.decode_example."""
    counts = Counter()
    real_open, real_decode = PIL.Image.open, datasets.Image.decode_example

    def counting_open(*args, **kwargs):
        counts["PIL.Image.open"] += 1
        return real_open(*args, **kwargs)

    def counting_decode(self, *args, **kwargs):
        counts["Image.decode_example"] += 1
        return real_decode(self, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    monkeypatch.setattr(datasets.Image, "decode_example", counting_decode)
    return counts


def test_the_rows_have_varied_sizes_many_turns_grayscale_and_cmyk(decoded):
    rows = decoded["train"] + decoded["validation"]
    sizes = {(row["metadata"]["width"], row["metadata"]["height"]) for row in rows}
    assert sizes <= set(SIZES) and len(sizes) >= 6
    assert all(row["image"].size == (row["metadata"]["width"], row["metadata"]["height"]) for row in rows)
    assert {"L", "CMYK", "RGB"} <= {row["image"].mode for row in rows}
    assert max(len(row["conversations"]) for row in rows) == 2 * QUESTIONS
    assert {len(row["conversations"]) for row in rows} >= {2, 2 * QUESTIONS}  # captions and long VQA rows


@pytest.mark.parametrize("name", ["Qwen3-VL released", *CAPS, "Qwen2-VL", "Qwen2.5-VL"])
def test_map_style_lengths_equal_the_processors_on_every_row(name, processors, card, splits, decoded):
    processor = processors[name]
    for split, rows in decoded.items():
        expected, _ = through_processor(processor, card, rows)
        with_lengths = card["with_lengths"](splits[split], processor)
        assert with_lengths.features["length"] == datasets.Value("int32")
        assert with_lengths["length"][:] == expected
        assert with_lengths["id"][:] == [row["id"] for row in rows]  # the other columns as they were
    assert len(set(expected)) > 5  # lengths that differ from row to row, not one value


@pytest.mark.parametrize("name", list(CAPS))
def test_each_other_bound_upscales_and_downscales_images(name, processors, card, decoded):
    """What the processor itself did: some images grew to at least min_pixels, others shrank to max_pixels."""
    processor = processors[name]
    rows = decoded["train"] + decoded["validation"]
    _, resized = through_processor(processor, card, rows)
    bounds = CAPS[name]
    pixels = [row["metadata"]["width"] * row["metadata"]["height"] for row in rows]
    assert any(before < bounds["min_pixels"] <= after for before, after in zip(pixels, resized))
    assert any(after <= bounds["max_pixels"] < before for before, after in zip(pixels, resized))


def test_the_qwen2_templates_add_a_system_turn_and_lengths_follow(processors, card, splits):
    row = splits["train"][0]
    assert "You are a helpful assistant." in processors["Qwen2.5-VL"].apply_chat_template(card["to_qwen_messages"](row))
    assert "You are a helpful assistant." not in processors["Qwen3-VL released"].apply_chat_template(
        card["to_qwen_messages"](row))


@pytest.mark.parametrize("name", ["Qwen3-VL released", "capped 4-16 tokens", "Qwen2.5-VL"])
def test_streamed_lengths_equal_the_map_style_ones(name, processors, card, repo, splits):
    processor = processors[name]
    for split in ("train", "validation"):
        stream = datasets.load_dataset(str(repo), "small", split=split, streaming=True)
        streamed = card["with_lengths"](stream, processor)
        assert streamed.features == datasets.Features({**stream.features, "length": datasets.Value("int32")})
        got = {row["id"]: row["length"] for row in streamed.select_columns(["id", "length"])}
        expected = card["with_lengths"](splits[split], processor)
        assert got == dict(zip(expected["id"], expected["length"]))


def test_streamed_lengths_on_the_cards_training_stream(processors, card, repo, splits, monkeypatch):
    """Each rank's shuffled `rank_stream` (the card's `ddp` snippet), as a training process reads it."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)  # datasets 5.2 sleeps 5 s per shuffled pass
    processor = processors["Qwen3-VL released"]
    ddp = run_readme_snippets("ddp")
    got = {}
    for rank in range(2):
        stream = card["with_lengths"](ddp["rank_stream"](str(repo), "small", rank, 2, buffer_size=8), processor)
        rows = list(stream)
        assert all(isinstance(row["image"], PIL.Image.Image) for row in rows)
        got.update((row["id"], row["length"]) for row in rows)
    expected = card["with_lengths"](splits["train"], processor)
    assert got == dict(zip(expected["id"], expected["length"]))


def test_a_shuffled_selection_keeps_every_rows_length(processors, card, splits):
    processor = processors["Qwen3-VL released"]
    whole = card["with_lengths"](splits["train"], processor)
    expected = dict(zip(whole["id"], whole["length"]))
    picked = card["with_lengths"](splits["train"].shuffle(seed=0).select(range(7)), processor)
    assert dict(zip(picked["id"], picked["length"])) == {key: expected[key] for key in picked["id"]}
    later = whole.shuffle(seed=1).filter(lambda row: row["length"] > 0)  # computed once, kept by later steps
    assert dict(zip(later["id"], later["length"])) == expected


def test_map_style_lengths_decode_no_image(processors, card, splits, decodes):
    with_lengths = card["with_lengths"](splits["validation"], processors["Qwen3-VL released"])
    assert all(with_lengths["length"][:])
    assert decodes == Counter()
    # The counters do see decoding: reading the images opens each one.
    images = with_lengths["image"][:]
    assert decodes["Image.decode_example"] == decodes["PIL.Image.open"] == len(images) == len(with_lengths)


def test_streamed_lengths_decode_no_image(processors, card, repo, decodes):
    stream = datasets.load_dataset(str(repo), "small", split="validation", streaming=True)
    streamed = card["with_lengths"](stream, processors["Qwen3-VL released"])
    lengths = [row["length"] for row in streamed.select_columns(["length"])]
    assert lengths and all(lengths)
    assert decodes == Counter()
    # Consumed whole, each image is decoded once: by the consumer, none for the lengths.
    rows = list(streamed)
    assert decodes["Image.decode_example"] == decodes["PIL.Image.open"] == len(rows) == len(lengths)
    assert all(isinstance(row["image"], PIL.Image.Image) for row in rows)


def made_rows(images: dict) -> datasets.Dataset:
    """Rows of just the columns `with_lengths` and the processor read, from {name: image bytes}; width and height
    from the header, by the builder's own check."""
    features = datasets.Features({
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "conversations": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "metadata": {"width": datasets.Value("int32"), "height": datasets.Value("int32")},
    })
    rows = {"id": [], "image": [], "conversations": [], "metadata": []}
    for name, data in sorted(images.items()):
        width, height, _ = inspect_image(data)  # and the perceptual hash, unused here
        rows["id"].append(name)
        rows["image"].append({"bytes": data, "path": name})
        rows["conversations"].append([{"role": "user", "content": f"What is in {name}?"},
                                      {"role": "assistant", "content": "a picture"}])
        rows["metadata"].append({"width": width, "height": height})
    return datasets.Dataset.from_dict(rows, features=features)


def encoded(image: PIL.Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def made_images() -> dict:
    """Grayscale, CMYK, an EXIF-rotated JPEG (the processor keeps the stored grid, as metadata does), a PNG."""
    base = PIL.Image.radial_gradient("L").resize((333, 500))
    photo = PIL.Image.merge("RGB", (base, base.transpose(PIL.Image.Transpose.ROTATE_180), base.point(lambda v: 255 - v)))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to display
    return {
        "gray.jpg": encoded(base, "JPEG"),
        "cmyk.jpg": encoded(photo.convert("CMYK").resize((500, 333)), "JPEG"),
        "exif-rotated.jpg": encoded(photo.resize((640, 301)), "JPEG", exif=exif.tobytes()),
        "rgba.png": encoded(photo.convert("RGBA").resize((90, 61)), "PNG"),
    }


def check_made_rows(rows: datasets.Dataset, processors, card) -> None:
    for name, processor in processors.items():
        expected, _ = through_processor(processor, card, list(rows))
        assert card["with_lengths"](rows, processor)["length"][:] == expected, name


def test_grayscale_cmyk_rotated_and_png_images_made_here(processors, card):
    rows = made_rows(made_images())
    assert {image.mode for image in rows["image"]} == {"L", "CMYK", "RGB", "RGBA"}
    # The header (metadata) gives the stored grid; datasets applies the EXIF orientation when it decodes, so the
    # processor gets the transposed image: the same number of image tokens, since its resize treats both sides alike.
    rotated = rows[rows["id"][:].index("exif-rotated.jpg")]
    assert (rotated["metadata"]["width"], rotated["metadata"]["height"]) == (640, 301)
    assert rotated["image"].size == (301, 640)
    check_made_rows(rows, processors, card)


@pytest.mark.filterwarnings("ignore:Passing `min_pixels` and `max_pixels`:FutureWarning")
@pytest.mark.parametrize("bounds", [dict(max_pixels=16 * 32 * 32), dict(min_pixels=600 * 32 * 32),
                                    dict(min_pixels=4 * 32 * 32, max_pixels=8 * 32 * 32)])  # fmt: skip
def test_pixel_bounds_set_as_attributes_are_followed(bounds, tokenizer, card):
    """`processor.image_processor.max_pixels = N` (how Qwen's fine-tuning code and many scripts set the bounds): the
    image processor resizes by such an attribute rather than by `size`, so the lengths must follow it too."""
    rows = made_rows(made_images())
    processor = tiny_processor(tokenizer)
    processor.image_processor.size = dict(QWEN3_VL_SIZE)
    unbounded, _ = through_processor(processor, card, list(rows))
    for name, value in bounds.items():
        setattr(processor.image_processor, name, value)
    expected, _ = through_processor(processor, card, list(rows))
    assert expected != unbounded  # the processor did resize by the attributes
    assert card["with_lengths"](rows, processor)["length"][:] == expected


def test_lengths_computed_again_replace_the_column(tokenizer, card):
    """"Change the bounds and the lengths change: compute them again" (the doc): on a dataset that has `length`
    already, map-style or streamed, the new column replaces the old one."""
    rows = made_rows(made_images())
    processor = tiny_processor(tokenizer)
    processor.image_processor.size = dict(QWEN3_VL_SIZE)
    once, streamed = card["with_lengths"](rows, processor), card["with_lengths"](rows.to_iterable_dataset(), processor)
    card["cap_pixels"](processor, 8 * 32 * 32)
    expected, _ = through_processor(processor, card, list(rows))
    assert once["length"][:] != expected
    again = card["with_lengths"](once, processor)
    assert again.column_names == once.column_names and again["length"][:] == expected
    assert [row["length"] for row in card["with_lengths"](streamed, processor)] == expected


def test_real_coco_jpegs(processors, card):
    paths = sorted(glob.glob(os.path.join(REAL_COCO, "*2014", "*.jpg")))
    if not paths:
        pytest.skip(f"no real COCO JPEGs in {REAL_COCO} (../shared/realdata is not part of the repository)")
    images = {}
    for path in paths:
        with open(path, "rb") as handle:
            images[os.path.basename(path)] = handle.read()
    rows = made_rows(images)
    assert rows[rows["id"][:].index("COCO_train2014_000000470442.jpg")]["image"].mode == "L"
    assert len({(m["width"], m["height"]) for m in rows["metadata"]}) > 5
    check_made_rows(rows, processors, card)
