"""The incremental JSON reader agrees with ijson record for record, on valid, broken and truncated
documents, whatever the window size (records cut across window boundaries included)."""

import io
import json
import random

import ijson
import pytest

from arr_coc.process.errors import SourceFormatError
from arr_coc.readers import jsonstream


def collect(items, error_type):
    out = []
    try:
        for item in items:
            out.append(item)
    except error_type:
        return "error", out
    return "ok", out


def random_value(rng, depth=0):
    pick = rng.random()
    if depth > 3 or pick < 0.3:
        return rng.choice(
            [1, -2, 3.5, 1e10, 1234567890123, True, False, None, "", 'héllo "q" \\ \n é \U0001f600 ☃', "x" * rng.randint(0, 50)]
        )
    if pick < 0.65:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}é": random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def documents() -> list[bytes]:
    rng = random.Random(1)
    docs = []
    for _ in range(60):
        doc = {"info": random_value(rng), "questions": [random_value(rng) for _ in range(rng.randint(0, 6))]}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1, 4]))
        docs.append(text.encode())
    docs += [
        b"", b"[]", b'{"questions": 5}', b'{"questions": [1,2,]}', b'{"questions": [1 2]}', b'{"questions": [NaN]}',
        b'{"questions": [1]} x', b'{"questions": ["\xff"]}', b'{"questions": [tru]}', b'{"questions": ["abc',
        b'{"questions": [{"a": 1}, {"b": [1, {"c": "\\u00e9\\ud83d\\ude00"}]}]}',
    ]
    docs += [doc[:cut] for doc in docs[:20] for cut in range(0, len(doc), max(1, len(doc) // 8))]
    return docs


def wrong_shape(data: bytes, list_key=None) -> bool:
    """Valid JSON without the layout a reader needs: ijson reads nothing, our readers refuse it."""
    document = json.loads(data)
    if list_key is None:
        return not isinstance(document, dict)
    return not isinstance(document, dict) or not isinstance(document.get(list_key), list)


@pytest.mark.parametrize("window", [1, 3, 16, 1 << 20])
def test_reader_matches_ijson(window, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK_BYTES", window)
    for data in documents():
        expected = collect(ijson.items(io.BytesIO(data), "questions.item", use_float=True), ijson.JSONError)
        if expected[0] == "ok" and wrong_shape(data, "questions"):
            expected = ("error", expected[1])
        assert collect(jsonstream.iter_list_items(io.BytesIO(data), "questions", "f"), SourceFormatError) == expected, data
        expected = collect(ijson.kvitems(io.BytesIO(data), "", use_float=True), ijson.JSONError)
        if expected[0] == "ok" and wrong_shape(data):
            expected = ("error", expected[1])
        assert collect(jsonstream.iter_dict_items(io.BytesIO(data), "f"), SourceFormatError) == expected, data
