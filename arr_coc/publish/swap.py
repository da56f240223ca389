"""Putting a finished build in place: `data/<config>/` and `README.md` replaced together, or not at all.

A build leaves its result in a staging directory (inside the repository, so every move is a rename
on one file system):

    <staging>/data/<config>/    the new shards and build report
    <staging>/README.md         the new card

The swap moves the old `data/<config>/` aside into the staging directory (never deleting it), moves
the new one in, then replaces README.md with one atomic `os.replace`. Before the first move it keeps
a copy of the old README and writes a journal; until the journal is gone, the old files are the
only copy of the previous build and nothing may delete them. Any exception or interrupt during the
swap rolls it back; SIGINT and SIGTERM are held back while it runs (a few renames), and a build that
is killed outright (SIGKILL, OOM) leaves the journal, from which the next build finishes the job
with `recover`: forward when every step had happened, back otherwise.

Each step of the rollback reads the state from the file system, so a rollback that is itself cut
short can simply be run again.
"""

import contextlib
import json
import logging
import os
import shutil
from typing import Optional

from ..process.interrupts import held_signals

logger = logging.getLogger(__name__)

JOURNAL = "swap-journal.json"
NEW_README = "README.md"
OLD_README = "README.previous.md"
OLD_DATA = "previous"


class SwapError(Exception):
    """A swap that could not be completed or undone; says where the previous build is kept."""


def swap_in(repo: str, config: str, staging: str) -> None:
    """Replace repo/data/<config> and repo/README.md with the staged ones, all or nothing."""
    with held_signals():
        _begin(repo, config, staging)
        try:
            _apply(repo, config, staging)
        except BaseException:
            roll_back(repo, staging)
            raise
        try:
            _forget(staging)
        except OSError as error:  # the swap is done; the next build finds it so and clears the journal
            logger.warning("swap of %s done, but its journal stays: %s", config, error)


def pending(staging: str) -> bool:
    """True while the staging directory holds the only copy of a previous build."""
    return os.path.exists(os.path.join(staging, JOURNAL))


def recover(repo: str, staging: str) -> Optional[str]:
    """Finish the swap of a build that died in it; returns "forward", "back" or None (no swap)."""
    journal = _read_journal(staging)
    if journal is None:
        return None
    with held_signals():
        if not journal.get("rolling_back") and _all_steps_done(journal["config"], staging):
            _forget(staging)
            return "forward"
        roll_back(repo, staging)
        return "back"


def roll_back(repo: str, staging: str) -> None:
    """Put the previous data/<config> and README.md back; safe to repeat after an interruption."""
    journal = _read_journal(staging)
    if journal is None:
        return
    if not journal.get("rolling_back"):
        # From here on a half-undone swap must never be mistaken for a finished one.
        _write_journal(staging, dict(journal, rolling_back=True))
    config = journal["config"]
    target, new_data, old_data = _paths(repo, config, staging)
    old_readme, readme = os.path.join(staging, OLD_README), os.path.join(repo, "README.md")
    if not os.path.exists(os.path.join(staging, NEW_README)):  # the new card went in
        if journal["had_readme"]:
            if os.path.exists(old_readme):
                os.replace(old_readme, readme)
        elif os.path.exists(readme):
            os.remove(readme)
    if not os.path.exists(new_data) and os.path.exists(target):  # the new shards went in
        os.rename(target, new_data)
    if os.path.exists(old_data):
        os.rename(old_data, target)
    _forget(staging)
    logger.info("swap of %s rolled back: the previous shards and README are in place", config)


def _begin(repo: str, config: str, staging: str) -> None:
    readme = os.path.join(repo, "README.md")
    had_readme = os.path.exists(readme)
    if had_readme:
        # A copy, so the repository's README stays in place until the single os.replace.
        partial = os.path.join(staging, OLD_README + ".partial")
        shutil.copyfile(readme, partial)
        os.replace(partial, os.path.join(staging, OLD_README))
    _write_journal(staging, {"config": config, "had_readme": had_readme})


def _apply(repo: str, config: str, staging: str) -> None:
    target, new_data, old_data = _paths(repo, config, staging)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        os.rename(target, old_data)
    os.rename(new_data, target)
    os.replace(os.path.join(staging, NEW_README), os.path.join(repo, "README.md"))


def _all_steps_done(config: str, staging: str) -> bool:
    return not os.path.exists(os.path.join(staging, "data", config)) and not os.path.exists(os.path.join(staging, NEW_README))


def _paths(repo: str, config: str, staging: str) -> tuple[str, str, str]:
    return os.path.join(repo, "data", config), os.path.join(staging, "data", config), os.path.join(staging, OLD_DATA)


def _read_journal(staging: str) -> Optional[dict]:
    try:
        with open(os.path.join(staging, JOURNAL), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _write_journal(staging: str, journal: dict) -> None:
    partial = os.path.join(staging, JOURNAL + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(journal, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, os.path.join(staging, JOURNAL))


def _forget(staging: str) -> None:
    """The swap is settled (done or undone): what is left in staging is no longer needed."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(staging, JOURNAL))
