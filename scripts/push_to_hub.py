#!/usr/bin/env python
"""Upload the dataset repository to the Hugging Face Hub, leaving it consistent at every commit.

    python scripts/push_to_hub.py [--repo-id NorthHead/arr-coc-vqa-training] [--repo-dir DIR]
                                  [--public] [--dry-run] [--commit-message TEXT]

Uploads the card, the builder and its package, the built shards and reports, the scripts, the
tests, the requirement files and .gitattributes, and nothing else: no caches, venvs, scratch or
staging builds, `.env` files or other secrets.

Two commits, each leaving the Hub repository loadable:
1. the code (builder, package, scripts, tests, requirements, .gitattributes): nothing that
   `load_dataset` or the viewer reads;
2. every local `data/<config>/` (shards and build report) with README.md, and the deletion of the
   Hub's files under those same `data/<config>/` folders that this push does not have (shards of
   an earlier build, an older layout's `<split>-<source>-NNNNN-of-NNNNN.parquet` included), in one
   commit: the card's `{split}-*` globs match the old shards until the new card arrives, so shards
   and card must change together. The Hub commit is atomic, and
   create_commit uploads the files before it creates the commit, so an interrupted push leaves the
   repository as it was (re-running resends only what the Hub does not have yet).
Files under any other `data/<config>/` (a config not built here) are never touched. Before anything
is sent, every shard is checked to be Parquet (`PAR1` at both ends, not a Git LFS pointer), and the
card may name only configs whose files are pushed or already on the Hub.

The token comes from the environment (HF_TOKEN) or the login cache (`hf auth login`), never from
the command line, and is never printed. `--dry-run` prints the plan (commits, the files each adds,
the Hub files it deletes, marking an older layout's shards) after listing the Hub's files, the one
read-only request it makes; `--dry-run --offline` prints it without asking the Hub (deletions then
shown per folder).
"""

import argparse
import dataclasses
import os
import sys
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from arr_coc.publish.layout import OLD_SHARD_NAME  # noqa: E402

DEFAULT_REPO_ID = "NorthHead/arr-coc-vqa-training"

ALLOW_PATTERNS = [
    "README.md",
    ".gitattributes",
    "arr_coc_vqa.py",
    "docs/*.md",
    "arr_coc/*.py",  # fnmatch: `*` also crosses `/`, so this takes arr_coc/<layer>/*.py (and scripts/ its packages)
    "requirements*.txt",
    "data/*/*.parquet",
    "data/*/build_report.json",
    "scripts/*.py",
    "tests/*.py",
]
# Belt and braces: nothing below may go out even if an allow pattern ever widens.
IGNORE_PATTERNS = [".env", ".env.*", "**/.env", "*.pem", "*.key", "**/__pycache__/**", "*.pyc", ".venv/**", ".build-staging/**", "scratch/**"]
PARQUET_MAGIC = b"PAR1"
LFS_POINTER_START = b"version https://git-lfs"


class PushError(Exception):
    """A push refused before anything is sent; the message is one line."""


@dataclasses.dataclass
class Commit:
    message: str
    adds: list  # paths relative to the repository, sent from the local copy
    deletes: Optional[list]  # Hub paths; None in an offline plan: "whatever the Hub has there"
    delete_under: list  # the data/<config>/ folders whose stale files this commit deletes


def files_to_upload(repo_dir: str) -> list[str]:
    """Every file the upload sends (paths relative to repo_dir), filtered exactly as upload_folder does."""
    from huggingface_hub.utils import filter_repo_objects

    relative = []
    for root, dirs, files in os.walk(repo_dir):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".venv", "__pycache__", ".build-staging", "scratch"))
        for name in files:
            relative.append(os.path.relpath(os.path.join(root, name), repo_dir).replace(os.sep, "/"))
    selected = filter_repo_objects(sorted(relative), allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return list(selected)


def check_shards(repo_dir: str, files: list[str]) -> None:
    """Every shard must be real Parquet: a checkout without `git lfs pull` has pointer files there."""
    for path in files:
        if not path.endswith(".parquet"):
            continue
        full = os.path.join(repo_dir, path)
        with open(full, "rb") as handle:
            start = handle.read(64)
            handle.seek(max(0, os.path.getsize(full) - len(PARQUET_MAGIC)))
            end = handle.read()
        if start.startswith(LFS_POINTER_START):
            raise PushError(f"{path}: a Git LFS pointer, not the shard: run `git lfs pull` (or rebuild) first")
        if not (start.startswith(PARQUET_MAGIC) and end == PARQUET_MAGIC and len(start) >= 8):
            raise PushError(f"{path}: not a Parquet file (no PAR1 magic at both ends)")


def pushed_configs(files: list[str]) -> list[str]:
    return sorted({path.split("/")[1] for path in files if path.startswith("data/") and path.count("/") == 2})


def plan(files: list[str], remote_files: Optional[list[str]], message: str) -> list[Commit]:
    """The commits of a push; remote_files=None plans without knowing the Hub (the dry run)."""
    folders = [f"data/{config}/" for config in pushed_configs(files)]
    code = [path for path in files if path != "README.md" and not path.startswith("data/")]
    data = [path for path in files if path.startswith("data/")] + [path for path in files if path == "README.md"]
    deletes = None
    if remote_files is not None:
        local = set(files)
        deletes = sorted(path for path in remote_files if path.startswith(tuple(folders)) and path not in local)
    commits = [Commit(f"{message}: code", code, [], [])] if code else []
    commits.append(Commit(f"{message}: data and card", data, deletes, folders))
    return commits


def check_card_configs(repo_dir: str, files: list[str], remote_files: list[str]) -> None:
    """The card to be pushed may name only folders this push or the Hub has, and must keep naming
    the Hub's other data folders (pushing a card without them would hide those configs)."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    readme = os.path.join(repo_dir, "README.md")
    try:
        configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data) if os.path.exists(readme) else {}
    except Exception as error:  # noqa: BLE001 - yaml and card errors alike: one line, nothing sent
        raise PushError(f"README.md: cannot read the front matter: {' '.join(str(error).split())}") from None
    named = {}
    for name, entry in configs.items():
        for pattern in _patterns(entry.get("data_files")):
            parts = pattern.split("/")
            if len(parts) == 3 and parts[0] == "data":
                named.setdefault(f"data/{parts[1]}/", name)
    available = {f"data/{config}/" for config in pushed_configs([*files, *remote_files])}
    pushed = {f"data/{config}/" for config in pushed_configs(files)}
    for folder, name in sorted(named.items()):
        if folder not in available:
            raise PushError(f"README.md: config {name!r} reads {folder} but neither this push nor the Hub has files there")
    for folder in sorted(available - pushed - set(named)):
        raise PushError(f"README.md: no config reads the Hub's {folder}; pushing this card would hide it (build it here or keep its entry)")


def _patterns(data_files) -> list[str]:
    """Every path pattern of a `data_files` entry, in any of its YAML shapes."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [pattern for value in data_files.values() for pattern in _patterns(value)]
    patterns = []
    for item in data_files or []:
        patterns += _patterns(item.get("path") if isinstance(item, dict) else item)
    return patterns


def push(api, repo_id: str, repo_dir: str, files: list[str], message: str) -> list[Commit]:
    """List the Hub's files, check, and send the plan's commits in order."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    remote_files = api.list_repo_files(repo_id, repo_type="dataset")
    check_card_configs(repo_dir, files, remote_files)
    commits = plan(files, remote_files, message)
    for commit in commits:
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=os.path.join(repo_dir, path)) for path in commit.adds]
        operations += [CommitOperationDelete(path_in_repo=path) for path in commit.deletes]
        info = api.create_commit(repo_id, operations, commit_message=commit.message, repo_type="dataset")
        print(f"{commit.message}: {len(commit.adds)} files sent, {len(commit.deletes)} deleted: {getattr(info, 'commit_url', info)}")
    return commits


def describe(commits: list[Commit], repo_dir: str, repo_id: str) -> str:
    lines = []
    total_bytes = total_files = 0
    for number, commit in enumerate(commits, 1):
        lines.append(f"commit {number} of {len(commits)}: {commit.message}")
        for path in commit.adds:
            size = os.path.getsize(os.path.join(repo_dir, path))
            total_bytes, total_files = total_bytes + size, total_files + 1
            lines.append(f"  add    {size:>14,d}  {path}")
        if commit.deletes is None:
            for folder in commit.delete_under:
                lines.append(f"  delete {'':>14}  every Hub file under {folder} not added above")
        else:
            lines.extend(f"  delete {_older_layout_mark(path):>14}  {path}" for path in commit.deletes)
    lines.append(f"total: {total_bytes:,d} bytes in {total_files} files -> {repo_id}")
    return "\n".join(lines)


def _older_layout_mark(path: str) -> str:
    """What the size column of a deletion says: whether the file is a shard of the older layout."""
    return "older layout" if OLD_SHARD_NAME.match(os.path.basename(path)) else ""


def hub_files(api, repo_id: str) -> list[str]:
    """The Hub repository's files; none when the repository does not exist yet (a first push)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_files(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return []


def dry_run(api, repo_id: str, repo_dir: str, files: list[str], message: str) -> str:
    """The plan a push would carry out now: the Hub's files listed (read-only), the same checks, nothing sent."""
    remote_files = hub_files(api, repo_id) if api is not None else None
    if remote_files is not None:
        check_card_configs(repo_dir, files, remote_files)
    text = describe(plan(files, remote_files, message), repo_dir, repo_id)
    if remote_files is None:
        return text + "\ndry run: nothing sent, the Hub's files not listed (--offline)"
    return text + f"\ndry run: nothing sent; the Hub's {len(remote_files)} files listed"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID)
    parser.add_argument("--repo-dir", default=REPO_ROOT, help="local repository to upload (default: this one)")
    parser.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (commits, files, deletions); lists the Hub's files, sends nothing")
    parser.add_argument("--offline", action="store_true", help="with --dry-run: do not list the Hub's files (no network)")
    parser.add_argument("--commit-message", default="Update dataset")
    args = parser.parse_args(argv)

    files = files_to_upload(args.repo_dir)
    try:
        if not any(path.startswith("data/") for path in files):
            raise PushError("no built shards under data/: run scripts/build.py first")
        check_shards(args.repo_dir, files)
        if args.offline and not args.dry_run:
            raise PushError("--offline plans a push without sending it: use it with --dry-run")
        from huggingface_hub import HfApi

        api = HfApi()  # token: HF_TOKEN or the login cache, resolved by huggingface_hub itself
        if args.dry_run:
            print(dry_run(None if args.offline else api, args.repo_id, args.repo_dir, files, args.commit_message))
            return 0
        api.create_repo(args.repo_id, repo_type="dataset", private=not args.public, exist_ok=True)
        push(api, args.repo_id, args.repo_dir, files, args.commit_message)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the Hub's errors (auth, network) in one line as well
        what = f"push to {args.repo_id} failed"
        if args.dry_run:
            what = f"dry run of a push to {args.repo_id} could not list the Hub's files (--offline plans without them)"
        print(f"error: {what}: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
