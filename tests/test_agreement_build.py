"""Answer agreement in the build: `metadata.qa[].answer_count` / `answer_score`, `min_answer_score` (skip
reason `low_agreement`), the build report's `answer_counts`, and the card's `agreement_filter` snippet.

The mirror (conftest's shared one, 8 images x 2 questions per split) is made so that how many references
agree with each target is known from how its records were written (the manifest's expected_answer_counts,
and the quirk records whose references spell the answer otherwise); the builder computes it with the
official evaluation's rules (arr_coc/pipeline/agreement.py, tests/test_agreement.py). The two must agree.
"""

import json
import math
import os
import subprocess
import sys

import build
import datasets
import numpy as np
import pytest
from helpers import ROOT, SPLITS, make_sample_mirror, prepared, raw_rows, run_readme_snippets

from arr_coc.pipeline.report import ReportInvariantError, check_invariant
from arr_coc_vqa import ArrCocVqa

SOURCE_NAMES = ("vqav2", "gqa", "okvqa", "coco")
AGREEMENT_SOURCES = ("vqav2", "okvqa")
# The official score of c agreeing references among 10 (derived in tests/test_agreement.py).
SCORE = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}
BUILD = os.path.join(ROOT, "scripts", "build.py")


def score_of(count: int) -> float:
    return SCORE.get(count, 1.0)


def as_stored(score: float) -> float:
    """A score as a float32 column gives it back."""
    return float(np.float32(score))


def source_of(row) -> str:
    return SOURCE_NAMES[row["source"]] if isinstance(row["source"], int) else row["source"]


@pytest.fixture(scope="module")
def manifest(mirror):
    with open(os.path.join(str(mirror), make_sample_mirror.MANIFEST_NAME)) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def unfiltered(mirror, tmp_path_factory):
    builder = prepared(mirror, tmp_path_factory.mktemp("cache"), "full")
    built = builder.as_dataset()
    return builder, {split: raw_rows(built[split]) for split in SPLITS}


@pytest.fixture(scope="module")
def filtered(mirror, tmp_path_factory):
    """min_answer_score=0.9 in two processes: rows must not depend on num_proc."""
    builder = prepared(mirror, tmp_path_factory.mktemp("cache"), "full", num_proc=2, min_answer_score=0.9)
    built = builder.as_dataset()
    return builder, {split: raw_rows(built[split]) for split in SPLITS}


def kept_at(rows: list, min_score: float) -> list:
    """What filtering turns below `min_score` out of `rows` must give: the kept turns of each row, in
    order, and no row that is left without turns."""
    kept_rows = []
    for row in rows:
        qa = row["metadata"]["qa"]
        keep = [i for i, turn in enumerate(qa) if turn["answer_score"] is None or score_of(turn["answer_count"]) >= min_score]
        if qa and not keep:
            continue
        if qa:
            row = dict(row, conversations=[t for i in keep for t in row["conversations"][2 * i : 2 * i + 2]])
            row["metadata"] = dict(row["metadata"], qa=[qa[i] for i in keep])
        kept_rows.append(row)
    return kept_rows


# -- the fields --------------------------------------------------------------------------------------


def test_every_vqa_turn_carries_the_agreement_its_record_was_made_with(unfiltered, manifest):
    builder, rows = unfiltered
    stats = builder.build_stats()
    for split in SPLITS:
        histograms = {source: dict.fromkeys(map(str, range(11)), 0) for source in AGREEMENT_SOURCES}
        for row in rows[split]:
            source = source_of(row)
            for turn in row["metadata"]["qa"]:
                if source == "gqa":
                    assert turn["answer_count"] is None and turn["answer_score"] is None
                    continue
                assert turn["answer_score"] == as_stored(score_of(turn["answer_count"]))
                histograms[source][str(turn["answer_count"])] += 1
        for source in AGREEMENT_SOURCES:
            expected = manifest["sources"][source][split]["expected_answer_counts"]
            assert histograms[source] == expected
            assert stats[source][split]["answer_counts"] == expected
            assert list(stats[source][split]["answer_counts"]) == [str(count) for count in range(11)]
        assert "answer_counts" not in stats["gqa"][split] and "answer_counts" not in stats["coco"][split]
    # the mirror's targets cover low and full agreement, so the figures mean something
    train = manifest["sources"]["vqav2"]["train"]["expected_answer_counts"]
    assert train["0"] and any(train[str(c)] for c in (1, 2)) and train["3"] and any(train[str(c)] for c in range(4, 11))


def test_references_spelled_otherwise_agree_unless_all_ten_are(unfiltered, manifest):
    """Some references spell the answer otherwise ("two", "the 2.", " 2\\n"): they still agree. All ten
    spelled one other way: identical references are not normalised, so none agrees (score 0.0)."""
    _, rows = unfiltered
    quirks = manifest["quirks"]["vqav2"]
    turns = {
        turn["question_id"]: (turn, answer["content"])
        for split in SPLITS
        for row in rows[split]
        for turn, answer in zip(row["metadata"]["qa"], row["conversations"][1::2])
    }
    for split in SPLITS:
        [some] = quirks["some_references_spell_the_answer_differently"][split]
        turn, answer = turns[str(some)]
        assert turn["answer_count"] > turn["answers"].count(answer) and turn["answer_count"] >= 1
        [every] = quirks["all_references_spell_the_answer_differently"][split]
        turn, answer = turns[str(every)]
        assert len(set(turn["answers"])) == 1 and turn["answers"][0] != answer
        assert (turn["answer_count"], turn["answer_score"]) == (0, 0.0)


# -- min_answer_score ------------------------------------------------------------------------------


def test_min_answer_score_drops_turns_counted_per_question(unfiltered, filtered):
    (plain_builder, plain), (builder, rows) = unfiltered, filtered
    plain_stats, stats = plain_builder.build_stats(), builder.build_stats()
    for split in SPLITS:
        assert rows[split] == kept_at(plain[split], 0.9)
        for source in SOURCE_NAMES:
            before, after = plain_stats[source][split], stats[source][split]
            dropped = sum(
                score_of(turn["answer_count"]) < 0.9
                for row in plain[split]
                if source_of(row) == source and source in AGREEMENT_SOURCES
                for turn in row["metadata"]["qa"]
            )
            assert after["skipped"].get("low_agreement", 0) == dropped
            assert after["items_written"] == before["items_written"] - dropped
            assert after["items_selected"] == after["items_written"] + sum(after["skipped"].values())
            assert after.get("answer_counts") == before.get("answer_counts")  # written + low_agreement
    # the mirror exercises the boundaries: a count of 3 (0.9) is kept, lower ones go, a row goes whole
    kept_counts = {turn["answer_count"] for split in SPLITS for row in rows[split] for turn in row["metadata"]["qa"]}
    assert 3 in kept_counts and not kept_counts & {0, 1, 2}
    assert sum(stats["vqav2"][split]["skipped"]["low_agreement"] for split in SPLITS) > 0
    assert stats["vqav2"]["train"]["rows_written"] < plain_stats["vqav2"]["train"]["rows_written"]
    for split in SPLITS:
        for row in rows[split]:
            roles = [turn["role"] for turn in row["conversations"]]
            assert roles == ["user", "assistant"] * (len(row["metadata"]["qa"]) or 1)  # a caption row: one pair


def test_turns_are_dropped_before_they_are_cut_into_rows(mirror, unfiltered, tmp_path):
    """turns_per_example=1, streamed: the kept questions of an image are chunks 0, 1, ... with no gap."""
    _, plain = unfiltered
    builder = ArrCocVqa(config_name="full", data_dir=str(mirror), cache_dir=str(tmp_path), min_answer_score=0.9, turns_per_example=1)
    streamed = raw_rows(builder.as_streaming_dataset(split="train"))
    expected = []
    for row in kept_at(plain["train"], 0.9):
        base = row["id"].rsplit("/", 1)[0]
        for chunk, turn in enumerate(row["metadata"]["qa"] or [None]):  # a caption row: one chunk, no qa
            expected.append((f"{base}/{chunk}", turn and turn["question_id"]))
    got = [(row["id"], row["metadata"]["qa"][0]["question_id"] if row["metadata"]["qa"] else None) for row in streamed]
    assert got == expected
    assert any(row["id"].endswith("/1") for row in streamed)


def test_build_script_flag_report_and_loading(mirror, filtered, tmp_path):
    """scripts/build.py --min-answer-score: the report a user reads and the rows load_dataset gives."""
    repo = tmp_path / "repo"
    result = subprocess.run(
        [sys.executable, BUILD, "--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo),
         "--min-answer-score", "0.9"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    with open(repo / "data" / "small" / "build_report.json") as handle:
        report = json.load(handle)
    assert report["config_overrides"] == {"min_answer_score": 0.9}
    stats = filtered[0].build_stats()  # `small` keeps the whole mirror
    for source in SOURCE_NAMES:
        for split in SPLITS:
            assert report["sources"][source][split] == stats[source][split]
    assert "low_agreement" in result.stdout  # the summary lists the skips
    for split in SPLITS:
        expected = sorted(filtered[1][split], key=lambda row: row["id"])
        loaded = raw_rows(datasets.load_dataset(str(repo), "small", split=split))
        streamed = raw_rows(datasets.load_dataset(str(repo), "small", split=split, streaming=True))
        assert sorted(loaded, key=lambda row: row["id"]) == expected
        assert streamed == loaded


def test_a_coco_val2014_image_left_without_turns_stays_in_the_near_duplicate_audit(mirror, tmp_path):
    """The audit compares the train images written with the validation images written and the COCO val2014
    images the build reads (DESIGN.md): a val2014 image whose every turn min_answer_score drops was read."""
    found = {}
    for score in (0.0, 1.0):
        builder = prepared(mirror, tmp_path / str(score), "full", sources=("vqav2",), min_answer_score=score)
        found[score] = builder.near_duplicates_report()["comparisons"]["train_vs_validation"], builder.build_stats()["vqav2"]
    (plain, plain_stats), (strict, strict_stats) = found[0.0], found[1.0]
    assert strict_stats["validation"]["rows_written"] < plain_stats["validation"]["rows_written"]  # one image lost every turn
    assert strict["other_images"] == plain["other_images"]
    # a train image left without turns is not written, so not audited (one row per image here)
    dropped_train = plain_stats["train"]["rows_written"] - strict_stats["train"]["rows_written"]
    assert strict["train_images"] == plain["train_images"] - dropped_train


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_min_answer_score_must_be_a_score(value):
    with pytest.raises(ValueError, match="min_answer_score must be a number from 0.0 to 1.0"):
        ArrCocVqa(config_name="small", data_dir="unused", min_answer_score=value)


def test_build_script_rejects_a_bad_min_answer_score_in_one_line(mirror, tmp_path):
    for value, code in (("high", 2), ("1.5", 1)):
        result = subprocess.run(
            [sys.executable, BUILD, "--config", "small", "--data-dir", str(mirror), "--output-dir", str(tmp_path / "repo"),
             "--min-answer-score", value],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == code
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and ("min_answer_score" in errors[0] or "--min-answer-score" in errors[0]), result.stderr
        assert not (tmp_path / "repo" / "data").exists()
    assert build.parse_args(["--config", "small", "--min-answer-score", "0.6"]).overrides == {"min_answer_score": 0.6}


def test_report_invariant_checks_the_histogram():
    stats = {"items_total": 5, "items_selected": 5, "items_written": 3, "rows_written": 2, "skipped": {"low_agreement": 2}}
    report = {"sources": {"vqav2": {"train": dict(stats, answer_counts={"1": 2, "4": 3})}}}
    check_invariant(report, {"train": 2})
    report["sources"]["vqav2"]["train"]["answer_counts"] = {"1": 2, "4": 2}
    with pytest.raises(ReportInvariantError, match="vqav2/train: answer_counts holds 4 questions, not the 5"):
        check_invariant(report, {"train": 2})


# -- the card's snippet ----------------------------------------------------------------------------


def test_card_snippet_keeps_the_turns_the_build_would(unfiltered, filtered):
    """`agreed_turns(dataset, 0.9)` over the unfiltered rows, map-style and streamed, gives the rows the
    build gives with min_answer_score=0.9: the same turns, alternating, no empty row, images unchanged,
    the schema kept (0.9 must keep the turns stored as float32 0.8999999762)."""
    agreed_turns = run_readme_snippets("agreement_filter")["agreed_turns"]
    builder, _ = unfiltered
    for split in SPLITS:
        expected = filtered[1][split]
        mapped = agreed_turns(builder.as_dataset(split=split), 0.9)
        assert mapped.features == builder.info.features
        assert raw_rows(mapped) == expected
        # streamed: undecoded when asked before the filter (a decoded stream stays decoded), decoded by default
        streamed = agreed_turns(builder.as_streaming_dataset(split=split).decode(False), 0.9)
        assert list(streamed) == expected
        decoded = list(agreed_turns(builder.as_streaming_dataset(split=split), 0.9))
        assert [row["id"] for row in decoded] == [row["id"] for row in expected]
        assert decoded[0]["image"].size == (expected[0]["metadata"]["width"], expected[0]["metadata"]["height"])
    assert not math.isclose(as_stored(0.9), 0.9, rel_tol=0, abs_tol=1e-9)  # why the snippet compares as float32
