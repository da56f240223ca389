"""Where one build's files are, and which version of each it reads.

A config names a mirror (`data_dir`: a directory, or a base URL fsspec reads by ranges) or nothing
(the official URLs). From that, `BuildInputs` says for every source file the builder needs: its
location, fetched into the shared download cache when it is a URL that is read whole, pinned to the
version it has at the start of the build; and it lays out the shards (`ShardSpec`) that read them.
The builder (arr_coc_vqa.py) makes one per build and keeps only what it reports.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from arr_coc import schema
from arr_coc.network.download import cached_download
from arr_coc.network.remote import check_protocol, current_version, is_url, join_location, url_protocol
from arr_coc.pipeline import decontamination
from arr_coc.pipeline.shard import ShardSpec
from arr_coc.process.errors import SourceFormatError
from arr_coc.readers import sources, vg

logger = logging.getLogger(__name__)

# Each source's images are split by digest into this many shards per split, so that
# `download_and_prepare(num_proc=2)` runs in parallel and streaming has several shards. Parts that
# one process generates one after the other read the source's files once (the builder's runs of parts).
PARTS_PER_SOURCE = 2
# The order the shards are generated in. `num_proc` workers take contiguous runs of shards, and each
# remembers the images it has checked and hashed (pipeline.images.CheckMemo): VQAv2 and COCO captions
# use the same COCO photos, so next to each other they land in one worker, which decodes each photo
# once. With all four sources and two workers: [VQAv2, COCO] and [GQA, OK-VQA], each about 80k images
# of `full` train, instead of [VQAv2, GQA] and [OK-VQA, COCO] decoding the 83k COCO photos twice.
# Which rows a build writes, the Parquet shards (one family per source) and the build's counts and audit
# (read in the config's order of sources: ShardSpec.counts_index) do not depend on it.
GENERATION_ORDER = ("vqav2", "coco", "gqa", "okvqa")


@dataclass
class BuildInputs:
    """The files of one build. `config` is an ArrCocVqaConfig; `downloads_dir` the shared download cache."""

    config: object
    downloads_dir: str
    streaming: bool
    progress: bool = True
    downloaded_from: dict = field(default_factory=dict)  # cached path -> URL, so that an error names both
    pins: dict = field(default_factory=dict)  # location -> the version this build reads
    decontamination_read: dict = field(default_factory=dict)  # the report's record of the id files read

    # -- the shards -------------------------------------------------------------------------------

    def shard_specs(self) -> dict:
        """{split: its shards}, every file they read pinned, GQA shards carrying the photo ids they check."""
        specs = {split: self._split_specs(split) for split in schema.SPLITS}
        specs = self._pin_archives(specs)
        # Read here, once per build in this process; GQA shards get the result as plain data.
        photo_ids = self._read_photo_ids()
        if photo_ids is not None:
            for split in schema.SPLITS:
                gqa_photos = decontamination.gqa_photos(photo_ids, split)
                specs[split] = [
                    dataclasses.replace(spec, gqa_photos=gqa_photos) if spec.source == "gqa" else spec for spec in specs[split]
                ]
        return specs

    def _split_specs(self, split: str) -> list[ShardSpec]:
        """The split's shards in GENERATION_ORDER, each counted (`counts_index`) at its place in the config's order."""
        in_config_order = self._specs_in_config_order(split)
        generated = sorted(in_config_order, key=lambda spec: GENERATION_ORDER.index(spec.source))  # stable: parts stay in order
        return [dataclasses.replace(spec, index=position) for position, spec in enumerate(generated)]

    def _specs_in_config_order(self, split: str) -> list[ShardSpec]:
        specs = []
        for source in self.config.sources:
            files = sources.source_files(source, split)
            questions = (self._annotation_archive(files.questions.archive, source), files.questions.member)
            annotations = None
            if files.annotations is not None:
                annotations = (self._annotation_archive(files.annotations.archive, source), files.annotations.member)
            cap = self.config.image_cap(split)
            image_archive, url_template = self._image_source(files, source, cap)
            for part in range(PARTS_PER_SOURCE):
                specs.append(
                    ShardSpec(
                        index=len(specs),
                        counts_index=len(specs),
                        source=source,
                        split=split,
                        original_split=sources.ORIGINAL_SPLITS[source][split],
                        part=part,
                        num_parts=PARTS_PER_SOURCE,
                        cap=cap,
                        questions=questions,
                        annotations=annotations,
                        image_archive=image_archive,
                        image_folder=files.image_folder,
                        image_url_template=url_template,
                    )
                )
        return specs

    def gqa_n_images_archive(self, specs: dict) -> tuple[Optional[str], Optional[dict], Optional[str]]:
        """(GQA images.zip to read the `n...` members from and its pinned version, or None and why not)."""
        if "gqa" not in self.config.sources:
            return None, None, "GQA is not among the sources"
        spec = next(spec for spec in specs["train"] if spec.source == "gqa")
        capped = self.config.max_images_train is not None or self.config.max_images_validation is not None
        if capped and is_url(spec.image_archive):
            return None, None, (
                "a capped build over a remote images.zip does not read its n... members (tens of thousands of range "
                "reads); build full, or from a local mirror, to audit them"
            )
        return spec.image_archive, spec.versions.get(spec.image_archive), None

    # -- one version of every file ----------------------------------------------------------------

    def _pin_archives(self, specs: dict) -> dict:
        """Every file the shards read, pinned to the version it has now (one HEAD or metadata request for a
        remote file, one stat for a local one): shards in any process then read that version or fail in one
        line (arr_coc.network.versions), never a mix of two. Local files too: a cached download that another
        build sharing the cache fetches again, or a mirror file copied over, is another version."""
        for spec in (spec for split_specs in specs.values() for spec in split_specs):
            for location in (spec.image_archive, spec.questions[0], spec.annotations[0] if spec.annotations else None):
                if location is not None:
                    self._pin(location)
        return {split: [dataclasses.replace(spec, versions=self.pins) for spec in split_specs] for split, split_specs in specs.items()}

    def _pin(self, location: str) -> dict:
        if location not in self.pins:
            self.pins[location] = current_version(location)
        return self.pins[location]

    # -- leakage control's id files ---------------------------------------------------------------

    def _read_photo_ids(self) -> Optional[decontamination.PhotoIds]:
        """Visual Genome's COCO ids (GQA rows' `coco_id`) and, with `decontaminate`, COCO's 2014 id lists.

        Only GQA needs them: COCO-sourced rows are split-clean by construction. With decontamination
        off the map is still read when it is there, so that `coco_id` does not change with the switch.
        """
        enabled = self.config.decontaminate
        self.decontamination_read = {"enabled": enabled, "files": {}, "visual_genome_images_with_coco_id": None}
        if "gqa" not in self.config.sources:
            return None
        image_data = self._photo_id_file(vg.ARCHIVE, needed=enabled)
        coco_annotations = self._photo_id_file(decontamination.COCO_ARCHIVE, needed=True) if enabled else None
        try:
            pins = {location: self._pin(location) for location in (image_data, coco_annotations) if location is not None}
            photo_ids = decontamination.read_photo_ids(image_data, coco_annotations, pins)
        except SourceFormatError as error:  # name the URL of a downloaded file, not only its cache path
            raise type(error)(with_origins(error.filename, self.downloaded_from), error.message, error.record) from None
        except FileNotFoundError as error:  # a URL that turned out not to exist (streaming reads lazily)
            if enabled:
                raise FileNotFoundError(f"{one_line(error)}; leakage control needs it: {decontamination.OFF_HINT}") from None
            logger.warning("%s; GQA rows get coco_id null", one_line(error))
            photo_ids = decontamination.read_photo_ids(None, None)
        self.decontamination_read["files"] = photo_ids.files
        if image_data is not None:
            self.decontamination_read["visual_genome_images_with_coco_id"] = len(photo_ids.coco_ids)
        return photo_ids

    def _photo_id_file(self, archive: str, needed: bool) -> Optional[str]:
        try:
            location = self._location(archive, "gqa")
        except FileNotFoundError as error:  # a local mirror without the file
            if needed:
                raise FileNotFoundError(
                    f"{one_line(error)}; leakage control needs it for GQA (decontaminate is on): "
                    f"add it, or {decontamination.OFF_HINT}"
                ) from None
            logger.warning("%s; GQA rows get coco_id null", one_line(error))
            return None
        try:
            return self._download(location)  # the same cached, resumable, retried download
        except FileNotFoundError as error:  # a definite 404 from a mirror or host
            if needed:
                raise FileNotFoundError(f"{one_line(error)}; leakage control needs {archive}: {decontamination.OFF_HINT}") from None
            logger.warning("%s; GQA rows get coco_id null", one_line(error))
            return None

    # -- locations ----------------------------------------------------------------------------------

    def _location(self, archive: str, source: str) -> str:
        data_dir = self.config.data_dir
        if data_dir is None:
            return sources.OFFICIAL_URLS[archive]
        if url_protocol(data_dir) == "file":
            data_dir = data_dir[len("file://"):]  # a local mirror, read in place rather than downloaded
        if is_url(data_dir):  # http(s)://, s3://, gs://, hf://datasets/...: anything fsspec reads by ranges
            check_protocol(data_dir)
            return join_location(data_dir, archive)
        path = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), archive)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: the mirror has no {archive} (needed by source {source!r})")
        return path

    def _annotation_archive(self, archive: str, source: str) -> str:
        # A local path comes back unchanged, a URL is downloaded once into the persistent download
        # cache, and in streaming mode the URL is kept and its members are read lazily (retried).
        return self._download(self._location(archive, source))

    def _download(self, location: str) -> str:
        """A URL fetched (resumable, verified, retried) into the download cache; anything else as it is.

        Not `dl_manager.download`: datasets fetches a URL in one try with no resume. The cache is the
        download manager's (`<cache_dir>/downloads`, by default under HF_DATASETS_CACHE), shared by
        every build and config, and kept when a build fails.
        """
        if self.streaming or not is_url(location):
            return location
        path = cached_download(location, self.downloads_dir, progress=self.progress)
        self.downloaded_from[path] = location
        return path

    def _image_source(self, files, source: str, cap: Optional[int]) -> tuple[Optional[str], Optional[str]]:
        """(zip archive location, None) or (None, per-image URL template)."""
        location = self._location(files.image_archive, source)
        if self.config.data_dir is not None:
            return location, None  # a local zip, or range reads of a mirror's
        if cap is not None and source != "gqa":
            return None, sources.COCO_IMAGE_URL  # single COCO images: never the 13 GB archive
        if cap is None and not self.streaming:
            return self._download(location), None  # every image is needed: fetch the archive once
        return location, None  # range reads of the official archive (GQA images.zip members)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def with_origins(reason: str, downloaded_from: dict) -> str:
    """A reason that names a downloaded file by its cache path names its URL too: the cache path
    alone says nothing of where the bytes came from, the URL alone not which copy was read."""
    for path, url in downloaded_from.items():
        if path in reason:
            reason = reason.replace(path, f"{url} (cached as {path})", 1)
    return reason
