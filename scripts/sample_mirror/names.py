"""Official file and member names of the mirrored sources, and the source/split vocabulary.

A builder pointed at the mirror must find exactly the names of the real downloads
(reference/source-formats.md), so every archive and member name lives here once; the record writers, the
planner, the manifest and the tests all refer to these constants instead of spelling names again.
"""
from __future__ import annotations

SOURCES = ("vqav2", "gqa", "okvqa", "coco")
COCO_FAMILY = ("vqav2", "okvqa", "coco")  # sources whose images live in train2014.zip / val2014.zip
SPLITS = ("train", "validation")
COCO_SUB = {"train": "train2014", "validation": "val2014"}
GQA_SUB = {"train": "train_balanced", "validation": "val_balanced"}

VQAV2_FILES = {
    ("questions", "train"): ("v2_Questions_Train_mscoco.zip", "v2_OpenEnded_mscoco_train2014_questions.json"),
    ("questions", "validation"): ("v2_Questions_Val_mscoco.zip", "v2_OpenEnded_mscoco_val2014_questions.json"),
    ("annotations", "train"): ("v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json"),
    ("annotations", "validation"): ("v2_Annotations_Val_mscoco.zip", "v2_mscoco_val2014_annotations.json"),
}
OKVQA_FILES = {
    ("questions", "train"): ("OpenEnded_mscoco_train2014_questions.json.zip", "OpenEnded_mscoco_train2014_questions.json"),
    ("questions", "validation"): ("OpenEnded_mscoco_val2014_questions.json.zip", "OpenEnded_mscoco_val2014_questions.json"),
    ("annotations", "train"): ("mscoco_train2014_annotations.json.zip", "mscoco_train2014_annotations.json"),
    ("annotations", "validation"): ("mscoco_val2014_annotations.json.zip", "mscoco_val2014_annotations.json"),
}
GQA_QUESTIONS_ZIP = "questions1.2.zip"
GQA_IMAGES_ZIP = "images.zip"
COCO_ANNOTATIONS_ZIP = "annotations_trainval2014.zip"
COCO_IMAGE_ZIPS = {"train": "train2014.zip", "validation": "val2014.zip"}
VG_IMAGE_DATA_ZIP = "image_data.json.zip"  # Visual Genome's image metadata: the GQA -> COCO id map
VG_IMAGE_DATA_MEMBER = "image_data.json"
# Leakage control: a GQA image of our split whose photo is a COCO photo of the other split is skipped so.
OVERLAP_REASON = {"train": "eval_overlap", "validation": "train_overlap"}
OTHER_SPLIT = {"train": "validation", "validation": "train"}
