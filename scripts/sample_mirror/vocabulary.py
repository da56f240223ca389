"""Word lists that invented VQAv2, OK-VQA, GQA and COCO caption records are drawn from.

The record makers pick from these lists with seeded random choices, so the lists are part of the
mirror's bytes: reordering or extending one changes every generated mirror (and the byte-identity that
tests and benchmark caches rely on).  Keeping them in one place makes such a change visible as one.
"""
from __future__ import annotations

COLORS = ["white", "black", "blue", "red", "green", "brown", "gray", "yellow", "orange", "pink", "silver", "tan"]
# (name, category) - some names have two words so GQA annotations get slice keys like "3:5"
GQA_OBJECTS = [("table", "furniture"), ("coffee table", "furniture"), ("chair", "furniture"), ("car", "vehicle"),
               ("bus", "vehicle"), ("traffic light", "object"), ("fire hydrant", "object"), ("dog", "animal"),
               ("cat", "animal"), ("horse", "animal"), ("parrot", "bird"), ("pigeon", "bird"), ("shirt", "clothing"),
               ("tennis racket", "sports equipment"), ("umbrella", "object"), ("building", "building"),
               ("tree", "plant"), ("sky", "place"), ("grass", "plant"), ("man", "person"), ("woman", "person"),
               ("pizza", "food"), ("cell phone", "device"), ("street sign", "object"), ("bench", "furniture")]
GQA_RELATIONS = ["on", "next to", "under", "behind", "in front of", "near", "on top of", "to the left of"]
VQA_OBJECTS = ["dog", "cat", "car", "bus", "train", "man", "woman", "table", "plate", "clock", "bench", "kite",
               "umbrella", "surfboard", "pizza", "bed", "sink", "horse", "sign", "building"]
VQA_PLURALS = ["dogs", "cats", "cars", "people", "zebras", "giraffes", "birds", "plates", "chairs", "trees"]
VQA_ADJ = ["open", "empty", "wet", "on", "old", "clean", "moving", "full", "sunny", "broken"]
VQA_OTHER_ANSWERS = {
    "what is the": ["frisbee", "umbrella", "phone", "bat", "kite", "remote", "racket", "bag"],
    "where is the": ["table", "street", "beach", "kitchen", "field", "sky", "water", "grass"],
    "what sport is": ["tennis", "baseball", "soccer", "surfing", "skiing", "frisbee", "skateboarding"],
    "what room is": ["kitchen", "bathroom", "living room", "bedroom", "office", "dining room"],
}
OKVQA_TEMPLATES = [  # (question_type code, question, [(raw_answer, answer)])
    ("one", "What type of vehicle is this?", [("train", "train"), ("buses", "bus"), ("truck", "truck"), ("trolley", "trolley")]),
    ("two", "What brand is this device?", [("apple", "apple"), ("samsung", "samsung"), ("sony", "sony"), ("dell", "dell")]),
    ("three", "What material is the table made of?", [("wood", "wood"), ("wooden", "wood"), ("metal", "metal"), ("glass", "glass")]),
    ("four", "What sport can you use this for?", [("surfing", "surf"), ("tennis", "tennis"), ("skiing", "ski"), ("baseball", "baseball")]),
    ("five", "What ingredient is on top of this food?", [("cheese", "cheese"), ("tomatoes", "tomato"), ("pepperoni", "pepperoni"), ("onions", "onion")]),
    ("six", "In which country is this picture likely taken?", [("england", "england"), ("usa", "usa"), ("japan", "japan"), ("france", "france")]),
    ("seven", "What is the man about to do?", [("eat", "eat"), ("eating", "eat"), ("sleep", "sleep"), ("leave", "leave")]),
    ("eight", "What animal is shown here?", [("giraffes", "giraffe"), ("zebra", "zebra"), ("elephants", "elephant"), ("horse", "horse")]),
    ("nine", "What is this device used for?", [("communication", "communication"), ("calling", "call"), ("typing", "type"), ("texting", "text")]),
    ("ten", "What season is it?", [("winter", "winter"), ("summer", "summer"), ("fall", "fall"), ("spring", "spring")]),
    ("other", "Why is the person wearing a helmet?", [("safety", "safety"), ("protection", "protection"), ("rules", "rule"), ("safe", "safe")]),
]
CAPTION_SUBJECTS = ["A man", "A woman", "Two people", "A small dog", "A cat", "A group of kids", "A red bus",
                    "A train", "A plate of food", "A giraffe", "A surfer", "A kitchen", "A bathroom", "A clock tower"]
CAPTION_VERBS = ["standing next to", "sitting on", "riding", "parked in front of", "looking at", "near", "on top of",
                 "in the middle of", "walking across", "holding"]
CAPTION_OBJECTS = ["a wooden bench", "a busy street", "a white wall", "the beach", "a large field", "a kitchen counter",
                   "a tall building", "a grassy hill", "a parking lot", "the ocean", "a table", "a snowy slope"]
