#!/usr/bin/env python
"""Upload the dataset repository to the Hugging Face Hub with huggingface_hub's `upload_folder`.

    python scripts/push_to_hub.py [--repo-id NorthHead/arr-coc-vqa-training] [--repo-dir DIR]
                                  [--public] [--dry-run] [--commit-message TEXT]

Uploads the card, the builder and its package, the built shards and reports, the scripts, the
tests, the requirement files and .gitattributes, and nothing else: no caches, venvs, scratch or
staging builds, `.env` files or other secrets. Remote `data/` files that are not in the local
build (e.g. shards of an earlier build with more shards) are deleted in the same commit, so the
`{split}-*` globs never pick up a stale shard.

The token comes from the environment (HF_TOKEN) or the login cache (`hf auth login`), never from
the command line, and is never printed. `--dry-run` lists what would be uploaded and touches no
network.
"""

import argparse
import os
import sys
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_REPO_ID = "NorthHead/arr-coc-vqa-training"

ALLOW_PATTERNS = [
    "README.md",
    ".gitattributes",
    "arr_coc_vqa.py",
    "arr_coc/*.py",
    "requirements*.txt",
    "data/*/*.parquet",
    "data/*/build_report.json",
    "scripts/*.py",
    "tests/*.py",
]
# Belt and braces: nothing below may go out even if an allow pattern ever widens.
IGNORE_PATTERNS = [".env", ".env.*", "**/.env", "*.pem", "*.key", "**/__pycache__/**", "*.pyc", ".venv/**", ".build-staging/**", "scratch/**"]
DELETE_PATTERNS = ["data/**"]


def files_to_upload(repo_dir: str) -> list[tuple[str, int]]:
    """(path relative to repo_dir, size) of every file the upload sends, filtered exactly as upload_folder does."""
    from huggingface_hub.utils import filter_repo_objects

    relative = []
    for root, dirs, files in os.walk(repo_dir):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".venv", "__pycache__", ".build-staging", "scratch"))
        for name in files:
            relative.append(os.path.relpath(os.path.join(root, name), repo_dir).replace(os.sep, "/"))
    selected = filter_repo_objects(sorted(relative), allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return [(path, os.path.getsize(os.path.join(repo_dir, path))) for path in selected]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID)
    parser.add_argument("--repo-dir", default=REPO_ROOT, help="local repository to upload (default: this one)")
    parser.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    parser.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    parser.add_argument("--commit-message", default="Update dataset")
    args = parser.parse_args(argv)

    files = files_to_upload(args.repo_dir)
    if args.dry_run:
        for path, size in files:
            print(f"{size:>14,d}  {path}")
        print(f"{sum(size for _, size in files):>14,d}  total, {len(files)} files -> {args.repo_id} (dry run: nothing sent)")
        return 0
    if not any(path.startswith("data/") for path, _ in files):
        print("error: no built shards under data/: run scripts/build.py first", file=sys.stderr)
        return 1

    from huggingface_hub import HfApi

    api = HfApi()  # token: HF_TOKEN or the login cache, resolved by huggingface_hub itself
    api.create_repo(args.repo_id, repo_type="dataset", private=not args.public, exist_ok=True)
    commit = api.upload_folder(
        repo_id=args.repo_id,
        repo_type="dataset",
        folder_path=args.repo_dir,
        commit_message=args.commit_message,
        allow_patterns=ALLOW_PATTERNS,
        ignore_patterns=IGNORE_PATTERNS,
        delete_patterns=DELETE_PATTERNS,
    )
    print(f"uploaded {len(files)} files: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
