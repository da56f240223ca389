"""arr-coc-vqa-training: VQAv2, GQA, OK-VQA and COCO Captions as conversation-format examples.

This builder is the source of truth for every row of the dataset. It reads the four sources in
their official raw formats, from a mirror (`data_dir`: a directory or an http(s) base URL holding
the official archives) or from the official URLs, and yields one row per image of one source:
all of that image's questions as a multi-turn conversation, or a caption turn for COCO.

The Hub repository ships what this builder generates (Parquet shards + README YAML, written by
`scripts/build.py`), because datasets >= 4 no longer runs loading scripts. Use it directly with
    builder = ArrCocVqa(config_name="small", data_dir="/path/to/mirror")
    builder.download_and_prepare(); builder.as_dataset()      # or builder.as_streaming_dataset()
"""

import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

import datasets
from datasets.builder import Key

# The helpers live in the `arr_coc` package beside this file; make them importable however the
# script is loaded (by path, from the repo root, or from a test's temporary copy).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from arr_coc import schema  # noqa: E402
from arr_coc.network.retry import NetworkError  # noqa: E402
from arr_coc.pipeline import near_duplicates  # noqa: E402
from arr_coc.pipeline.inputs import BuildInputs, with_origins  # noqa: E402
from arr_coc.pipeline.report import decontamination_report  # noqa: E402
from arr_coc.pipeline.shard import RowOptions, ShardSpec, generate_parts  # noqa: E402
from arr_coc.pipeline.stats import ShardStats, failures, merge, merge_hashed, merge_images_skipped, record_failure  # noqa: E402
from arr_coc.process.errors import SourceFormatError  # noqa: E402
from arr_coc.readers import sources  # noqa: E402

logger = logging.getLogger(__name__)

_DESCRIPTION = (
    "VQAv2, GQA (balanced), OK-VQA and COCO Captions 2014 merged into conversation-format examples "
    "(one image, its questions as user/assistant turns, and metadata) for fine-tuning vision-language models."
)
_HOMEPAGE = "https://huggingface.co/datasets/NorthHead/arr-coc-vqa-training"
_LICENSE = "cc-by-4.0 (annotations); images follow the COCO/Flickr and Visual Genome terms"

# Beside a prepared dataset in the builder's cache: the counts of the build that made it.
_STATS_FOLDER = "arr_coc_build_stats"
_DECONTAMINATION_FILE = "arr_coc_decontamination.json"
# The near-duplicate audit's outcome, beside the builder's Arrow files.
NEAR_DUPLICATES_FILE = "near_duplicates.json"


@dataclass
class ArrCocVqaConfig(datasets.BuilderConfig):
    """Config of the merged dataset; every field can be overridden as a builder kwarg."""

    sources: tuple = schema.SOURCES
    max_images_train: Optional[int] = None  # per source
    max_images_validation: Optional[int] = None  # per source
    turns_per_example: Optional[int] = None  # None = all of an image's questions in one row
    gqa_answer_style: str = "short"  # "short" (answer) or "full" (fullAnswer)
    vqa_prompt_suffix: str = schema.DEFAULT_VQA_PROMPT_SUFFIX
    captions_per_image: int = 1
    seed: int = 0
    # Leakage control (DESIGN.md): skip GQA train images whose photo is a COCO val2014 photo
    # (`eval_overlap`) and GQA validation images whose photo is a COCO train2014 photo (`train_overlap`).
    decontaminate: bool = True
    # Drop VQAv2/OK-VQA turns whose answer_score (the official VQA accuracy of the answer against the
    # 10 references) is below this (`low_agreement`); GQA turns have no score and are never dropped.
    min_answer_score: float = 0.0
    # Near duplicates (DESIGN.md): None reports the perceptual-hash audit only; an int D also skips the
    # images within Hamming distance D (`eval_near_duplicate`, `train_near_duplicate`).
    near_duplicate_distance: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        self.sources = tuple(self.sources)
        unknown = [source for source in self.sources if source not in schema.SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"sources must be a non-empty subset of {list(schema.SOURCES)}, got {list(self.sources)}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources lists a source twice: {list(self.sources)}")
        for name in ("max_images_train", "max_images_validation"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be None or an integer >= 0, got {value!r}")
        if self.turns_per_example is not None and (not isinstance(self.turns_per_example, int) or self.turns_per_example < 1):
            raise ValueError(f"turns_per_example must be None or an integer >= 1, got {self.turns_per_example!r}")
        if self.gqa_answer_style not in ("short", "full"):
            raise ValueError(f"gqa_answer_style must be 'short' or 'full', got {self.gqa_answer_style!r}")
        if not isinstance(self.captions_per_image, int) or self.captions_per_image < 1:
            raise ValueError(f"captions_per_image must be an integer >= 1, got {self.captions_per_image!r}")
        if not isinstance(self.vqa_prompt_suffix, str):
            raise ValueError("vqa_prompt_suffix must be a string")
        if not isinstance(self.decontaminate, bool):
            raise ValueError(f"decontaminate must be True or False, got {self.decontaminate!r}")
        score = self.min_answer_score
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"min_answer_score must be a number from 0.0 to 1.0 (scores are 0.0, 0.3, 0.6, 0.9, 1.0), got {score!r}")
        self.min_answer_score = float(score)
        distance = self.near_duplicate_distance
        if distance is not None and (not isinstance(distance, int) or isinstance(distance, bool) or not 0 <= distance <= 64):
            raise ValueError(f"near_duplicate_distance must be None or an integer from 0 to 64 (bits), got {distance!r}")
        if distance is not None and not self.decontaminate:
            raise ValueError("near_duplicate_distance needs decontaminate=True: the near-duplicate audit is part of it")

    def image_cap(self, split: str) -> Optional[int]:
        return self.max_images_train if split == "train" else self.max_images_validation


class ArrCocVqa(datasets.GeneratorBasedBuilder):
    """VQAv2 + GQA + OK-VQA + COCO Captions as multi-turn conversations, one row per image."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = ArrCocVqaConfig
    BUILDER_CONFIGS = [
        ArrCocVqaConfig(
            name="small",
            version=VERSION,
            description="At most 1,000 train and 200 validation images per source: a quick look and CI.",
            max_images_train=1000,
            max_images_validation=200,
        ),
        ArrCocVqaConfig(name="full", version=VERSION, description="Every image of every source."),
    ]
    DEFAULT_CONFIG_NAME = "full"

    def _create_builder_config(self, config_name=None, custom_features=None, config_id=None, **config_kwargs):
        builder_config, config_id = super()._create_builder_config(
            config_name, custom_features, config_id, **config_kwargs
        )
        # datasets skips kwargs whose value is None, but None is meaningful here (no image cap,
        # all turns in one row); it also never re-validates an overridden config.
        for key, value in config_kwargs.items():
            if value is None and getattr(builder_config, key, None) is not None:
                setattr(builder_config, key, None)
        if config_kwargs:
            builder_config.__post_init__()
        return builder_config, config_id

    def _info(self):
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=schema.FEATURES,
            homepage=_HOMEPAGE,
            license=_LICENSE,
        )

    def _split_generators(self, dl_manager):
        # Shards report their counts here; `build_stats()` adds them up after the build.
        # Under the builder's cache dir, so they go with it instead of piling up in /tmp. A stream
        # counts apart: reading a stream must not hide the counts of the build prepared before it.
        cache_root = self._cache_dir_root if os.path.isdir(self._cache_dir_root) else None
        stats_dir = tempfile.mkdtemp(prefix="arr_coc_vqa_stats_", dir=cache_root)
        if dl_manager.is_streaming:
            self.stream_stats_dir = stats_dir
        else:
            self.stats_dir = stats_dir
        options = RowOptions(
            vqa_prompt_suffix=self.config.vqa_prompt_suffix,
            turns_per_example=self.config.turns_per_example,
            gqa_answer_style=self.config.gqa_answer_style,
            captions_per_image=self.config.captions_per_image,
            seed=self.config.seed,
            min_answer_score=self.config.min_answer_score,
        )
        if dl_manager.is_streaming and self.config.near_duplicate_distance is not None:
            raise ValueError(
                "near_duplicate_distance needs a map-style build (download_and_prepare, scripts/build.py): every image "
                "of both splits is compared before a row can be skipped; stream the built shards instead"
            )
        inputs = BuildInputs(self.config, _downloads_dir(dl_manager), dl_manager.is_streaming, _progress_bars())
        specs = inputs.shard_specs()
        self._n_images_archive = inputs.gqa_n_images_archive(specs)
        # What errors and reports need of the inputs afterwards.
        self.downloaded_from, self.decontamination_read = inputs.downloaded_from, inputs.decontamination_read
        self.stream_shards = sum(len(split_specs) for split_specs in specs.values())
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={"shards": specs[split], "options": options, "stats_dir": stats_dir},
            )
            for split in schema.SPLITS
        ]

    def _audit_near_duplicates(self) -> dict:
        """The audit (DESIGN.md, "Near duplicates") as the build keeps it: report, skips, rows to drop."""
        progress = _progress_bars()
        archive, pin, skipped_because = self._n_images_archive
        if archive is not None:
            n_images = near_duplicates.hash_n_images(archive, pin=pin, progress=progress)
        else:
            n_images = near_duplicates.NImages(skipped_because=skipped_because)
        audit = near_duplicates.audit(merge_hashed(self.stats_dir), n_images, self.config.near_duplicate_distance, progress)
        return {"report": audit.report, "skipped": audit.skipped, "dropped_rows": sorted(audit.dropped_rows)}

    def _near_duplicates_audit(self) -> Optional[dict]:
        """This builder's last audit, or the one kept beside a prepared cache it found; None if none ran."""
        if getattr(self, "_near_duplicates", None) is None:
            path = os.path.join(self.cache_dir, NEAR_DUPLICATES_FILE)
            if os.path.exists(path):
                with open(path) as handle:
                    self._near_duplicates = json.load(handle)
        return getattr(self, "_near_duplicates", None)

    def _as_dataset(self, split=datasets.Split.TRAIN, in_memory: bool = False) -> datasets.Dataset:
        """The split as generated, minus the images `near_duplicate_distance` skips (a filter by row id)."""
        dataset = super()._as_dataset(split=split, in_memory=in_memory)
        path = os.path.join(self._output_dir, NEAR_DUPLICATES_FILE)
        if self.config.near_duplicate_distance is None or not os.path.exists(path):
            return dataset
        with open(path) as handle:
            dropped = frozenset(json.load(handle)["dropped_rows"])
        if not dropped:
            return dataset
        return dataset.filter(
            lambda ids: [schema.image_key_of(row_id) not in dropped for row_id in ids],
            input_columns="id", batched=True, desc="Skipping near duplicates",
        )  # fmt: skip

    def _generate_examples(self, shards, options, stats_dir):
        # The parts of one source that this process generates one after the other share one read
        # of the source's annotation files; rows, keys and order are those of each part alone.
        for run in _runs_of_parts(shards):
            stats = [ShardStats(spec.source, spec.split, spec.part) for spec in run]
            counts = [0] * len(run)
            position = 0
            try:
                for position, row in generate_parts(run, options, stats):
                    yield Key(run[position].index, counts[position]), row
                    counts[position] += 1
            except Exception as error:
                # From a `num_proc` worker only a flattened traceback comes back: keep one line here.
                reason = with_origins(_failure_reason(run[position], error), getattr(self, "downloaded_from", {}))
                record_failure(stats_dir, run[position].counts_index, reason)
                raise
            for spec, spec_stats in zip(run, stats):
                _check_official_count(spec, spec_stats, self.config.data_dir)
                spec_stats.write(stats_dir, spec.counts_index)

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        self._near_duplicates = None
        if self.config.decontaminate:  # the audit is part of leakage control (DESIGN.md, "Near duplicates")
            self._near_duplicates = self._audit_near_duplicates()
            with open(os.path.join(self._output_dir, NEAR_DUPLICATES_FILE), "w") as handle:
                json.dump(self._near_duplicates, handle)
        # Keep the counts with the prepared data: a later builder that finds this cache (and so
        # generates nothing) still answers build_stats(), decontamination_report(), near_duplicates_report()
        # and skips the same near duplicates.
        kept = os.path.join(self._output_dir, _STATS_FOLDER)
        shutil.copytree(self.stats_dir, kept, ignore=shutil.ignore_patterns("failure-*", "*.tmp"))
        with open(os.path.join(self._output_dir, _DECONTAMINATION_FILE), "w") as handle:
            json.dump(self.decontamination_read, handle)

    def _counted_dir(self) -> str:
        """Where the counts of the last build are: this builder's own build, a prepared cache it found,
        or else a stream it has read to the end."""
        if getattr(self, "stats_dir", None) is None:
            kept = os.path.join(self.cache_dir, _STATS_FOLDER)
            if os.path.isdir(kept):
                self.stats_dir = kept
                with open(os.path.join(self.cache_dir, _DECONTAMINATION_FILE)) as handle:
                    self.decontamination_read = json.load(handle)
        if getattr(self, "stats_dir", None) is not None:
            return self.stats_dir
        stream_dir = getattr(self, "stream_stats_dir", None)
        if stream_dir is None:
            raise RuntimeError("no build has run in this builder: call download_and_prepare(), or read a stream to the end")
        done = len([name for name in os.listdir(stream_dir) if name.endswith(".json")])
        if done < self.stream_shards:
            raise RuntimeError(f"the stream has been read to the end in {done} of its {self.stream_shards} shards: "
                               "its counts are complete once every split has been read through")
        return stream_dir

    def build_stats(self) -> dict:
        """Per source and split: items_total/selected/written, rows_written and skips by reason.

        The counts of this builder's `download_and_prepare` (also when it found the data already
        prepared in its cache), or else of a stream read to the end.
        """
        stats = merge(self._counted_dir())
        audit = self._near_duplicates_audit()
        if audit is not None:  # what near_duplicate_distance skipped (nothing without it)
            near_duplicates.apply_skips(stats, audit["skipped"])
        return stats

    def decontamination_report(self) -> dict:
        """The build report's "decontamination" object: on or off, files read, what each split lost."""
        counted = self._counted_dir()
        return decontamination_report(self.decontamination_read, merge(counted), merge_images_skipped(counted))

    def near_duplicates_report(self) -> dict:
        """The build report's "near_duplicates" object: the perceptual-hash audit of the last build."""
        self._counted_dir()  # raises when no build has run
        audit = self._near_duplicates_audit()
        if audit is None:
            if self.config.decontaminate:
                raise RuntimeError("the near-duplicate audit follows a map-style build (download_and_prepare); a stream has none")
            return {"audited": False, "reason": "decontaminate is off"}
        return {"audited": True, **audit["report"]}

    def build_failures(self) -> list[str]:
        """One-line reasons of the shards that failed in the last build (also from `num_proc` workers)."""
        stats_dir = getattr(self, "stats_dir", None)
        return failures(stats_dir) if stats_dir else []


def _downloads_dir(dl_manager) -> str:
    cache_dir = dl_manager.download_config.cache_dir or datasets.config.DOWNLOADED_DATASETS_PATH
    return os.path.expanduser(str(cache_dir))


def _progress_bars() -> bool:
    return not datasets.utils.are_progress_bars_disabled()  # datasets.disable_progress_bars() silences ours too


def _runs_of_parts(shards: list[ShardSpec]) -> list[list[ShardSpec]]:
    """Consecutive shards of the same source and split, in the given order (which is the row order)."""
    runs: list[list[ShardSpec]] = []
    for spec in shards:
        run = runs[-1] if runs else None
        if run and (run[0].source, run[0].split) == (spec.source, spec.split) and spec.part not in {s.part for s in run}:
            run.append(spec)
        else:
            runs.append([spec])
    return runs


def _failure_reason(spec: ShardSpec, error: Exception) -> str:
    """One line naming the file and record: a bad-record error says it already; anything else gets
    the shard's source, split and file, so that even an unforeseen failure says where it happened."""
    if isinstance(error, (SourceFormatError, NetworkError)) or (isinstance(error, OSError) and error.filename):
        return str(error)
    archive, member = spec.questions
    return f"{archive}:{member}: building {spec.source} {spec.split} failed: {type(error).__name__}: {error}"


def _check_official_count(spec: ShardSpec, stats: ShardStats, data_dir: Optional[str]) -> None:
    expected = sources.OFFICIAL_ITEM_COUNTS.get((spec.source, spec.split))
    if data_dir is None and spec.part == 0 and expected is not None and stats.items_total != expected:
        logger.warning(
            "%s %s: the official files hold %d items, expected %d: has the release changed?",
            spec.source,
            spec.split,
            stats.items_total,
            expected,
        )
