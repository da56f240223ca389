"""The dataset card's YAML: this config's `configs:` and `dataset_info:` entries, nothing else.

Uses datasets' own card helpers (what `push_to_hub` writes), so the Hub and `load_dataset` read it
the way they read any pushed dataset. Other configs and all card prose are kept as they are.
"""

import re
from typing import Optional

import yaml
from datasets import DatasetInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from ..schema import SOURCES
from .layout import source_pattern

DEFAULT_CONFIG = "full"
# The config whose files the per-source configs (named after the sources) point at.
SOURCE_CONFIGS_OF = "full"

# Metadata for a card created from nothing (a build into a fresh directory).
NEW_CARD_METADATA = {
    "pretty_name": "ARR-COC VQA training mix",
    "license": "cc-by-4.0",
    "language": ["en"],
    "task_categories": ["visual-question-answering", "image-to-text"],
    "source_datasets": ["VQAv2", "GQA", "OK-VQA", "COCO Captions"],
    "tags": ["vqa", "multimodal", "conversations", "vision-language"],
}
NEW_CARD_BODY = (
    "\n# ARR-COC VQA training mix\n\n"
    "VQAv2, GQA, OK-VQA and COCO Captions as conversation-format examples, built by `scripts/build.py`.\n"
)


def config_entry(config_name: str, splits: list[str]) -> dict:
    return {"data_files": [{"split": split, "path": f"data/{config_name}/{split}-*"} for split in splits]}


class CardError(ValueError):
    """README.md's front matter cannot be read or updated; the message is one line naming the file."""


def source_config_entry(source: str, splits: list[str]) -> dict:
    """A source's own config: the same files as `full`, only that source's family of shards."""
    return {"data_files": [{"split": split, "path": source_pattern(SOURCE_CONFIGS_OF, split, source)} for split in splits]}


def updated_card(
    readme: Optional[str],
    config_name: str,
    info: DatasetInfo,
    splits: list[str],
    source_infos: Optional[dict[str, DatasetInfo]] = None,
    readme_path: str = "README.md",
) -> str:
    """The README text with this config's YAML entries replaced or added.

    For `full`, also one config per source in `source_infos` (source -> that source's DatasetInfo,
    its splits those with rows); per-source configs of sources not built any more are removed.
    Raises CardError when the front matter is broken: the build checks this before it starts
    (with a placeholder info) so that no finished build is thrown away over the card."""
    try:
        return _updated_card(readme, config_name, info, splits, source_infos)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise CardError(f"{readme_path}: cannot update the YAML front matter: {reason}") from error


def _updated_card(
    readme: Optional[str],
    config_name: str,
    info: DatasetInfo,
    splits: list[str],
    source_infos: Optional[dict[str, DatasetInfo]] = None,
) -> str:
    if readme is None:
        card = DatasetCard(f"---\n{DatasetCardData(**NEW_CARD_METADATA).to_yaml()}\n---\n{NEW_CARD_BODY}")
    else:
        _check_front_matter_is_closed(readme)
        card = DatasetCard(readme)
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    configs[config_name] = config_entry(config_name, splits)
    infos = {config_name: info}
    if config_name == SOURCE_CONFIGS_OF:
        _replace_source_configs(card.data, configs, infos, source_infos or {})
    _mark_default(configs)
    # to_dataset_card_data merges with what the card has; drop the stale copies first so that
    # the `default` flag moves and no entry of this config survives from an earlier build.
    card.data.pop("configs", None)
    MetadataConfigs(configs).to_dataset_card_data(card.data)
    DatasetInfosDict(infos).to_dataset_card_data(card.data)
    return card.content if card.content.endswith("\n") else card.content + "\n"


def _check_front_matter_is_closed(readme: str) -> None:
    # huggingface_hub reads an unclosed block as "no metadata": the update would then put a second
    # front matter above the first and leave the broken one in the card's text.
    if re.match(r"---[ \t]*\r?\n", readme) and not re.match(r"---[ \t]*\r?\n.*?\r?\n---[ \t]*(\r?\n|$)", readme, re.S):
        raise ValueError("the front matter opened by '---' on line 1 has no closing '---' line")


def _mark_default(configs: dict) -> None:
    if DEFAULT_CONFIG not in configs:
        return
    for name, entry in configs.items():
        if name == DEFAULT_CONFIG:
            entry["default"] = True
        else:
            entry.pop("default", None)


def _replace_source_configs(card_data, configs: dict, infos: dict, source_infos: dict[str, DatasetInfo]) -> None:
    """Per-source configs exactly for the sources this `full` build wrote: no config of the card may
    point at files the build no longer has."""
    for source in SOURCES:
        configs.pop(source, None)
    _drop_dataset_infos(card_data, SOURCES)
    for source in SOURCES:  # the schema's order, whatever order the caller used
        if source in source_infos:
            configs[source] = source_config_entry(source, list(source_infos[source].splits))
            infos[source] = source_infos[source]


def _drop_dataset_infos(card_data, names) -> None:
    """Remove these configs' `dataset_info` entries (a single entry is a dict, several a list)."""
    entries = card_data.get("dataset_info")
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return
    kept = [entry for entry in entries if entry.get("config_name", "default") not in names]
    if not kept:
        card_data.pop("dataset_info", None)
    else:
        card_data["dataset_info"] = kept if len(kept) > 1 else kept[0]
