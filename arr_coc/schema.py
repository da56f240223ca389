"""The example schema of the contract (DESIGN.md, "Example schema"): names, order and ClassLabels."""

import datasets

SOURCES = ("vqav2", "gqa", "okvqa", "coco")
TASKS = ("vqa", "caption")
ANSWER_TYPES = ("yes/no", "number", "other")
SPLITS = ("train", "validation")

DEFAULT_VQA_PROMPT_SUFFIX = "\nAnswer the question using a single word or phrase."

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "conversations": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "source": datasets.ClassLabel(names=list(SOURCES)),
        "task": datasets.ClassLabel(names=list(TASKS)),
        "metadata": {
            "image_id": datasets.Value("string"),
            # The COCO 2014 id of the same photo (GQA: Visual Genome's map; None when there is none),
            # so that users can filter against any COCO-based evaluation set.
            "coco_id": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "original_split": datasets.Value("string"),
            "qa": datasets.List(
                {
                    "question_id": datasets.Value("string"),
                    "question_type": datasets.Value("string"),
                    "answer_type": datasets.ClassLabel(names=list(ANSWER_TYPES)),
                    "answers": datasets.List(datasets.Value("string")),
                    # The official VQA accuracy of the assistant's answer against `answers` (arr_coc/pipeline/
                    # agreement.py) and how many of them agree with it; None for GQA (one reference answer).
                    "answer_count": datasets.Value("int32"),
                    "answer_score": datasets.Value("float32"),
                }
            ),
            "captions": datasets.List(datasets.Value("string")),
            # 64-bit perceptual hash, 16 hex digits (arr_coc/pipeline/phash.py): near-duplicate audits.
            "phash": datasets.Value("string"),
        },
    }
)


def row_id(source: str, original_split: str, image_id: str, chunk: int) -> str:
    return f"{image_key(source, original_split, image_id)}/{chunk}"


def image_key(source: str, original_split: str, image_id: str) -> str:
    """What the ids of one image's rows share: the row id less its chunk."""
    return f"{source}/{original_split}/{image_id}"


def image_key_of(row_id: str) -> str:
    return row_id.rsplit("/", 1)[0]
