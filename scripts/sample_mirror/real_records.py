"""Records and header values quoted from the reference, embedded among the invented records.

Real records pin the mirror to the real formats: each carries a quirk a builder has to cope with (a first
answer that differs from the majority answer, a majority tie, a zero-padded GQA id, an image id map entry),
and tests assert on them by id.  Where a record is not verbatim, its comment says which part is invented
and why.  The invented ids in plan.py avoid every id listed here.
"""
from __future__ import annotations

from sample_mirror.names import COCO_FAMILY

# The first records of the real image_data.json, verbatim (reference/source-formats.md 4b.2; the
# hf-dummy copy has image_id 1-5); generated records follow them in ascending image_id order.
VG_REAL_RECORDS = [
    {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "height": 600, "image_id": 1,
     "coco_id": None, "flickr_id": None},
    {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", "height": 600, "image_id": 2,
     "coco_id": None, "flickr_id": None},
    {"width": 640, "url": "https://cs.stanford.edu/people/rak248/VG_100K/3.jpg", "height": 480, "image_id": 3,
     "coco_id": None, "flickr_id": None},
]

VQA_INFO = {"description": "This is v2.0 of the VQA dataset.", "url": "http://visualqa.org", "version": "2.0",
            "year": 2017, "contributor": "VQA Team", "date_created": "2017-04-26 17:07:13"}
CC_BY_4 = {"url": "http://creativecommons.org/licenses/by/4.0/",
           "name": "Creative Commons Attribution 4.0 International License"}
COCO_INFO = {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2014,
             "contributor": "COCO Consortium", "date_created": "2017/09/01"}
COCO_LICENSES = [
    {"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution-NonCommercial-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {"url": "http://creativecommons.org/licenses/by-nc-nd/2.0/", "id": 3, "name": "Attribution-NonCommercial-NoDerivs License"},
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
    {"url": "http://flickr.com/commons/usage/", "id": 7, "name": "No known copyright restrictions"},
    {"url": "http://www.usa.gov/copyright.shtml", "id": 8, "name": "United States Government Work"},
]
OKVQA_QUESTION_TYPES = {
    "one": "Vehicles and Transportation", "two": "Brands, Companies and Products",
    "three": "Objects, Material and Clothing", "four": "Sports and Recreation", "five": "Cooking and Food",
    "six": "Geography, History, Language and Culture", "seven": "People and Everyday life",
    "eight": "Plants and Animals", "nine": "Science and Technology", "ten": "Weather and Climate", "other": "Other",
}

# Real image ids per source and split, most valuable first: when a split holds fewer images than this
# list, the tail is dropped.
REAL_IMAGE_IDS: dict[str, dict[str, list]] = {
    "vqav2": {"train": [458752, 393714, 263006], "validation": []},
    "okvqa": {"train": [51606, 81721, 480208], "validation": []},
    "coco": {"train": [318556, 116100], "validation": [391895, 203564, 179765, 322141, 522418]},
    "gqa": {"train": ["2354786", "n161313"], "validation": ["2405722"]},
}
REAL_COCO_IDS = {i for src in COCO_FAMILY for ids in REAL_IMAGE_IDS[src].values() for i in ids}
REAL_GQA_IMAGE_IDS = {i for ids in REAL_IMAGE_IDS["gqa"].values() for i in ids}

# VQAv2: real question texts (k = question_id % 1000) and annotations.  393714000's question text is not
# quoted in the reference; the one here is invented to fit its question_type.
VQAV2_REAL_QUESTIONS = {
    458752000: "What is this photo taken looking through?",
    393714000: "What color are the curtains?",
    263006000: "How many people are pictured?",
    263006001: "What color is the water?",
}


def vqa_answers(texts, confidences=None):
    confidences = confidences or ["yes"] * len(texts)
    return [{"answer": t, "answer_confidence": c, "answer_id": i + 1} for i, (t, c) in enumerate(zip(texts, confidences))]


VQAV2_REAL_ANNOTATIONS = {
    # verbatim from the reference: answers[0] "light blue" differs from multiple_choice_answer "white"
    393714000: {"question_type": "what color are the", "multiple_choice_answer": "white",
                "answers": vqa_answers(["light blue"] + ["white"] * 9,
                                        ["yes"] * 5 + ["maybe"] + ["yes"] * 4),
                "image_id": 393714, "answer_type": "other", "question_id": 393714000},
    # partial in the reference (type, mca, answers[0]); answers 2..10 invented
    458752000: {"question_type": "what is this", "multiple_choice_answer": "net",
                "answers": vqa_answers(["net", "net", "net", "netting", "net", "net", "mesh", "net", "net", "net"],
                                        ["maybe", "yes", "yes", "maybe", "yes", "yes", "no", "yes", "yes", "yes"]),
                "image_id": 458752, "answer_type": "other", "question_id": 458752000},
    263006000: {"question_type": "how many", "multiple_choice_answer": "2",
                "answers": vqa_answers(["2", "2", "2", "3", "2", "2", "2", "2", "1", "2"]),
                "image_id": 263006, "answer_type": "number", "question_id": 263006000},
    263006001: {"question_type": "what color is the", "multiple_choice_answer": "blue",
                "answers": vqa_answers(["blue", "green", "blue", "blue", "turquoise", "blue", "gray", "blue", "blue", "blue"],
                                        ["yes", "maybe", "yes", "yes", "maybe", "yes", "no", "yes", "yes", "yes"]),
                "image_id": 263006, "answer_type": "other", "question_id": 263006001},
}

OKVQA_REAL_QUESTIONS = {
    516065: (51606, "What is the hairstyle of the blond called?"),
    817215: (81721, "How old do you have to be in canada to do this?"),
    4802085: (480208, "Can you guess the place where the man is playing?"),
}
# (question_type, [(raw_answer, answer)] x 10, confidence).  The answers are invented: the reference's
# 516065 record is illustrative.  516065 carries the majority tie: "ponytail" 4x and "braid" 4x, "ponytail"
# first, so the expected answer is "ponytail" (alphabetical order would pick "braid").
OKVQA_REAL_ANNOTATIONS = {
    516065: ("four", [("pony tail", "ponytail"), ("braids", "braid"), ("ponytail", "ponytail"), ("braid", "braid"),
                      ("bun", "bun"), ("ponytail", "ponytail"), ("braid", "braid"), ("pony tail", "ponytail"),
                      ("braided", "braid"), ("pigtails", "pigtail")], 3),
    817215: ("seven", [("18", "18"), ("18", "18"), ("21", "21"), ("16", "16"), ("18", "18"), ("18", "18"),
                       ("16", "16"), ("18", "18"), ("19", "19"), ("18", "18")], 2),
    4802085: ("four", [("tennis court", "tennis court"), ("tennis court", "tennis court"), ("stadium", "stadium"),
                       ("tennis courts", "tennis court"), ("tennis court", "tennis court"), ("court", "court"),
                       ("tennis court", "tennis court"), ("wimbledon", "wimbledon"), ("tennis court", "tennis court"),
                       ("tennis court", "tennis court")], 4),
}

GQA_REAL_TRAIN = ("02930152", {
    "semantic": [{"operation": "select", "dependencies": [], "argument": "sky (2486325)"},
                 {"operation": "verify color", "dependencies": [0], "argument": "dark"}],
    "entailed": ["02930160", "02930158", "02930159", "02930154", "02930155", "02930156", "02930153"],
    "equivalent": ["02930152"],
    "question": "Is the sky dark?", "imageId": "2354786", "isBalanced": True,
    "groups": {"global": None, "local": "06-sky_dark"},
    "answer": "yes", "semanticStr": "select: sky (2486325)->verify color: dark [0]",
    "annotations": {"answer": {}, "question": {"2": "2486325"}, "fullAnswer": {"2": "2486325"}},
    "types": {"detailed": "verifyAttr", "semantic": "attr", "structural": "verify"},
    "fullAnswer": "Yes, the sky is dark."})
GQA_REAL_VAL = ("05515938", {
    "annotations": {"answer": {"0": "329774"}, "fullAnswer": {"3": "329774"}, "question": {"3": "329774"}},
    "answer": "parrot", "entailed": ["05515937", "05515936", "05515922", "05515921"], "equivalent": ["05515938"],
    "fullAnswer": "This is a parrot.", "groups": {"global": "bird", "local": "11q-bird"}, "imageId": "2405722",
    "isBalanced": True, "question": "What is this bird called?",
    "semantic": [{"argument": "bird (329774)", "dependencies": [], "operation": "select"},
                 {"argument": "name", "dependencies": [0], "operation": "query"}],
    "semanticStr": "select: bird (329774)->query: name [0]",
    "types": {"detailed": "categoryThis", "semantic": "cat", "structural": "query"}})
GQA_REAL_RECORDS = {"train": GQA_REAL_TRAIN, "validation": GQA_REAL_VAL}

COCO_REAL_IMAGES = {  # verbatim except width/height, which must describe the generated JPEG
    391895: {"license": 3, "file_name": "COCO_val2014_000000391895.jpg",
             "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_000000391895.jpg",
             "height": 360, "width": 640, "date_captured": "2013-11-14 11:18:45",
             "flickr_url": "http://farm9.staticflickr.com/8186/8119368305_4e622c8349_z.jpg", "id": 391895},
    522418: {"license": 4, "file_name": "COCO_val2014_000000522418.jpg",
             "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_000000522418.jpg",
             "height": 480, "width": 640, "date_captured": "2013-11-14 11:38:44",
             "flickr_url": "http://farm1.staticflickr.com/1/127244861_ab0c0381e7_z.jpg", "id": 522418},
}
# (caption id, image id, caption); only 37, 38, 49 and 48 are verbatim, 67/126/148 texts are invented.
COCO_REAL_CAPTIONS = {
    "train": [(48, 318556, "A very clean and well decorated empty bathroom"),
              (67, 116100, "A panoramic view of a kitchen and all of its appliances."),
              (126, 318556, "A blue and white bathroom with butterfly themed wall tiles."),
              (148, 116100, "A panoramic photo of a kitchen and dining room")],
    "validation": [(37, 203564, "A bicycle replica with a clock as the front wheel."),
                   (38, 179765, "A black Honda motorcycle parked in front of a garage."),
                   (49, 322141, "A room with blue walls and a white sink and door.")],
}
