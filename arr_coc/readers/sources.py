"""Where each source's files live: official archive names, members, URLs and image naming.

A mirror (`data_dir`) holds the official archives under their official base names, flat and
unextracted (DESIGN.md, "Source mirror layout"); without a mirror the official URLs are used.
"""

from dataclasses import dataclass
from typing import Optional

# split of the merged dataset -> the original split name of each source
ORIGINAL_SPLITS = {
    "vqav2": {"train": "train2014", "validation": "val2014"},
    "okvqa": {"train": "train2014", "validation": "val2014"},
    "coco": {"train": "train2014", "validation": "val2014"},
    "gqa": {"train": "train_balanced", "validation": "val_balanced"},
}

VQAV2_BASE_URL = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
OKVQA_BASE_URL = "https://okvqa.allenai.org/static/data"
GQA_BASE_URL = "https://downloads.cs.stanford.edu/nlp/data/gqa"
COCO_ZIPS_URL = "http://images.cocodataset.org/zips"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations"
# Single COCO images, so that a capped build never downloads a 13 GB archive.
# Visual Genome's image metadata: the id map from GQA (Visual Genome) images to COCO 2014 photos.
VISUAL_GENOME_URL = "http://visualgenome.org/static/data/dataset"
COCO_IMAGE_URL = "http://images.cocodataset.org/{folder}/{file_name}"

OFFICIAL_URLS = {
    "v2_Questions_Train_mscoco.zip": f"{VQAV2_BASE_URL}/v2_Questions_Train_mscoco.zip",
    "v2_Questions_Val_mscoco.zip": f"{VQAV2_BASE_URL}/v2_Questions_Val_mscoco.zip",
    "v2_Annotations_Train_mscoco.zip": f"{VQAV2_BASE_URL}/v2_Annotations_Train_mscoco.zip",
    "v2_Annotations_Val_mscoco.zip": f"{VQAV2_BASE_URL}/v2_Annotations_Val_mscoco.zip",
    "OpenEnded_mscoco_train2014_questions.json.zip": f"{OKVQA_BASE_URL}/OpenEnded_mscoco_train2014_questions.json.zip",
    "OpenEnded_mscoco_val2014_questions.json.zip": f"{OKVQA_BASE_URL}/OpenEnded_mscoco_val2014_questions.json.zip",
    "mscoco_train2014_annotations.json.zip": f"{OKVQA_BASE_URL}/mscoco_train2014_annotations.json.zip",
    "mscoco_val2014_annotations.json.zip": f"{OKVQA_BASE_URL}/mscoco_val2014_annotations.json.zip",
    "questions1.2.zip": f"{GQA_BASE_URL}/questions1.2.zip",
    "images.zip": f"{GQA_BASE_URL}/images.zip",
    "annotations_trainval2014.zip": f"{COCO_ANNOTATIONS_URL}/annotations_trainval2014.zip",
    "train2014.zip": f"{COCO_ZIPS_URL}/train2014.zip",
    "val2014.zip": f"{COCO_ZIPS_URL}/val2014.zip",
    "image_data.json.zip": f"{VISUAL_GENOME_URL}/image_data.json.zip",
}


@dataclass(frozen=True)
class ArchiveMember:
    """One JSON file inside one official archive."""

    archive: str  # official base name of the archive
    member: str  # member name inside it (for GQA: the base name; see gqa.find_question_member)


@dataclass(frozen=True)
class SourceFiles:
    """The files one source needs for one split."""

    questions: Optional[ArchiveMember]  # VQA questions, GQA questions, COCO captions
    annotations: Optional[ArchiveMember]  # VQA/OK-VQA annotations; None for GQA and COCO
    image_archive: str  # official base name of the image archive
    image_folder: str  # folder of the images inside the archive ("train2014", "images")


def _coco_image_archive(original_split: str) -> str:
    return f"{original_split}.zip"


def source_files(source: str, split: str) -> SourceFiles:
    original = ORIGINAL_SPLITS[source][split]
    if source == "vqav2":
        tag = "Train" if split == "train" else "Val"
        return SourceFiles(
            questions=ArchiveMember(f"v2_Questions_{tag}_mscoco.zip", f"v2_OpenEnded_mscoco_{original}_questions.json"),
            annotations=ArchiveMember(f"v2_Annotations_{tag}_mscoco.zip", f"v2_mscoco_{original}_annotations.json"),
            image_archive=_coco_image_archive(original),
            image_folder=original,
        )
    if source == "okvqa":
        questions = f"OpenEnded_mscoco_{original}_questions.json"
        annotations = f"mscoco_{original}_annotations.json"
        return SourceFiles(
            questions=ArchiveMember(f"{questions}.zip", questions),
            annotations=ArchiveMember(f"{annotations}.zip", annotations),
            image_archive=_coco_image_archive(original),
            image_folder=original,
        )
    if source == "gqa":
        return SourceFiles(
            questions=ArchiveMember("questions1.2.zip", f"{original}_questions.json"),
            annotations=None,
            image_archive="images.zip",
            image_folder="images",
        )
    if source == "coco":
        return SourceFiles(
            questions=ArchiveMember("annotations_trainval2014.zip", f"annotations/captions_{original}.json"),
            annotations=None,
            image_archive=_coco_image_archive(original),
            image_folder=original,
        )
    raise ValueError(f"unknown source {source!r}")


def coco_file_name(original_split: str, image_id: int) -> str:
    """COCO 2014 naming, shared by VQAv2, OK-VQA and captions: 12-digit zero-padded id."""
    return f"COCO_{original_split}_{image_id:012d}.jpg"


def gqa_file_name(image_id: str) -> str:
    return f"{image_id}.jpg"


# Items (questions; images for COCO) in the official files, for the sanity check of a build from
# the official URLs (big_vision style). A mirror may hold any subset, so mirrors are not checked.
OFFICIAL_ITEM_COUNTS = {
    ("vqav2", "train"): 443_757,
    ("vqav2", "validation"): 214_354,
    ("okvqa", "train"): 9_009,
    ("okvqa", "validation"): 5_046,
    ("gqa", "train"): 943_000,
    ("gqa", "validation"): 132_062,
    ("coco", "train"): 82_783,
    ("coco", "validation"): 40_504,
}
