"""Staging directories of scripts/build.py: one per running build, under <repo>/.build-staging.

Each staging directory `<config>-<pid>-<random>` has a lock file beside it (`<name>.lock`) that its
build holds with `flock` for as long as it runs. The kernel drops the lock when the process ends,
however it ends (SIGKILL and the OOM killer included), so a lock that can be taken means the owner
is gone: `remove_stale` finishes that build's swap if it died in one (see arr_coc/publish/swap.py) and
deletes the directory. A directory whose lock is held belongs to a running build and is left alone.

Swaps and that recovery also hold a lock on the repository directory itself, so two builds into
one repository never interleave their README updates.
"""

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import time

from . import swap

logger = logging.getLogger(__name__)

STAGING_DIR = ".build-staging"
# Staging directories without a lock file come from build.py versions before the locks; one that has
# not changed for this long cannot belong to a running build.
UNLOCKED_STALE_SECONDS = 24 * 3600


@contextlib.contextmanager
def repository_lock(repo: str):
    """Serialise swaps (and their recovery) between builds writing into `repo`."""
    fd = os.open(repo, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def staging_directory(repo: str, config: str):
    """A new staging directory owned by this process; removed at the end unless it holds the only
    copy of the previous build (a swap that could not be rolled back: the next build recovers it)."""
    root = os.path.join(repo, STAGING_DIR)
    owned = []
    try:
        # Signals wait for these few steps, so that an interrupt finds the directory either not yet
        # created or fully owned (and then removed below), never a lock file without its directory.
        with swap.held_signals():
            os.makedirs(root, exist_ok=True)
            owned.append(_create_owned(root, config))
        yield owned[0][0]
    finally:
        with swap.held_signals():
            if owned:
                path, lock_fd = owned[0]
                try:
                    discard(path)
                finally:
                    os.close(lock_fd)
            else:
                with contextlib.suppress(OSError):
                    os.rmdir(root)  # only when empty


def discard(path: str) -> None:
    """Remove a staging directory of this process, unless it holds the only copy of the previous build."""
    if swap.pending(path):
        logger.error("%s holds the previous build; the next build puts it back", path)
        return
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + ".lock")
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # only when empty


def remove_stale(repo: str) -> list[str]:
    """Recover and delete the staging directories of builds that are no longer running."""
    root = os.path.join(repo, STAGING_DIR)
    if not os.path.isdir(root):
        return []
    removed = []
    with repository_lock(repo):
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.endswith(".lock"):
                if not os.path.exists(path[: -len(".lock")]) and _remove_if_unowned(path, None, repo):
                    removed.append(path)
            elif os.path.isdir(path):
                if os.path.exists(path + ".lock"):
                    if _remove_if_unowned(path + ".lock", path, repo):
                        removed.append(path)
                elif time.time() - os.path.getmtime(path) > UNLOCKED_STALE_SECONDS:
                    _recover_and_delete(repo, path)
                    removed.append(path)
    for path in removed:
        logger.info("removed the staging directory of a build that is no longer running: %s", path)
    return removed


def _create_owned(root: str, config: str) -> tuple[str, int]:
    while True:
        path = os.path.join(root, f"{config}-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A cleaner may have taken and deleted the fresh lock file before we locked it.
            if os.fstat(fd).st_ino == os.stat(path + ".lock").st_ino:
                os.mkdir(path)
                return path, fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)


def _remove_if_unowned(lock_path: str, path, repo: str) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a running build's
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                if path is not None:
                    _recover_and_delete(repo, path)
                os.remove(lock_path)
                return True
        return False
    finally:
        os.close(fd)


def _recover_and_delete(repo: str, path: str) -> None:
    direction = swap.recover(repo, path)
    if direction is not None:
        logger.warning("a build was killed while swapping in its result; rolled %s: %s", direction, path)
    shutil.rmtree(path)
