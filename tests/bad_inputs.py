"""Bad source files for tests/test_bad_records.py and tests/test_bad_archives.py: records to read,
mirrors with one member damaged, zips with one field or member changed."""

import io
import json
import shutil
import struct
import warnings
import zipfile

import pytest
from PIL import Image

from arr_coc.process.errors import SourceFormatError
from arr_coc_vqa import ArrCocVqa

VQAV2_QUESTIONS = ("v2_Questions_Train_mscoco.zip", "v2_OpenEnded_mscoco_train2014_questions.json")
VQAV2_ANNOTATIONS = ("v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json")
GQA_TRAIN = ("questions1.2.zip", "train_balanced_questions.json")
COCO_CAPTIONS = ("annotations_trainval2014.zip", "annotations/captions_train2014.json")



def stream(document) -> io.BytesIO:
    return io.BytesIO(json.dumps(document).encode())


def question(qid, image_id=1, text="Q?"):
    return {"question_id": qid, "image_id": image_id, "question": text}


def annotation(qid, image_id=1, answer="yes", **fields):
    answers = [{"answer_id": i + 1, "answer": answer, "answer_confidence": "yes"} for i in range(10)]
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "is the",
        "answer_type": "yes/no",
        "multiple_choice_answer": answer,
        "answers": answers,
        **fields,
    }


def gqa_record(image_id="2354786", **fields):
    return {"imageId": image_id, "question": "Is the sky dark?", "answer": "yes", "fullAnswer": "Yes.", "types": {"detailed": "verifyAttr"}, **fields}


def coco_document(images=None, captions=None):
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg"}],
        "annotations": captions if captions is not None else [{"id": 48, "image_id": 1, "caption": "A cat."}],
    }


def read_all(reader, document, *args):
    return list(reader(stream(document), "f.json", *args))


def fails(reader, document, *args) -> str:
    with pytest.raises(SourceFormatError) as raised:
        read_all(reader, document, *args)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("f.json: ")
    return message


def okvqa_annotation(qid, answers):
    record = annotation(qid, answers=[{"answer_id": i + 1, "answer": answer} for i, answer in enumerate(answers)])
    del record["multiple_choice_answer"]
    return record


def set_first(records, key, value):
    """Set `key` of the first record (a list of records, or GQA's dict of them); returns nothing useful."""
    first = records[0] if isinstance(records, list) else next(iter(records.values()))
    first[key] = value


def damaged(mirror, tmp_path, archive, member, change):
    """A copy of the mirror whose member's JSON went through `change` (in place, or returned)."""
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    path = bad / archive
    with zipfile.ZipFile(path) as handle:
        members = {info.filename: handle.read(info) for info in handle.infolist()}
    document = json.loads(members[member])
    changed = change(document)
    members[member] = json.dumps(document if changed is None else changed).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return bad


def build_failures(mirror, tmp_path, sources, num_proc=None, **overrides) -> list:
    builder = ArrCocVqa(config_name="full", data_dir=str(mirror), cache_dir=str(tmp_path / "cache"), sources=sources, **overrides)
    with pytest.raises(Exception):
        builder.download_and_prepare(num_proc=num_proc)
    return builder.build_failures()


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


def patched_zip(path, signature: bytes, field_offset: int, fmt: str, change) -> None:
    """Rewrite one little-endian field of the first zip record with `signature` (a bit-flip stand-in)."""
    data = bytearray(path.read_bytes())
    at = data.index(signature) + field_offset
    size = struct.calcsize(fmt)
    (value,) = struct.unpack(fmt, data[at : at + size])
    data[at : at + size] = struct.pack(fmt, change(value))
    path.write_bytes(bytes(data))


def image_zip(tmp_path):
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("train2014/a.jpg", small_jpeg())
    return archive


def append_member(archive, name: str, data: bytes) -> None:
    """Store `name` a second time at the end of `archive` (zipfile warns; readers then see the last copy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(archive, "a") as handle:
            handle.writestr(name, data)
