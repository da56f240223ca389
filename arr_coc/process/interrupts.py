"""Ctrl-C and SIGTERM in a command-line build: one exception in the parent, silent `num_proc` workers.

SIGTERM becomes an exception like Ctrl-C's, so that the same cleanup and rollback run for both
(exit 128 + the signal number). While worker processes run, an interrupt is handled differently:
unwinding through datasets' pool teardown prints worker tracebacks (the workers write to a queue
whose manager is already gone) and can hang on a queue lock held by a worker that died. So the
parent kills its workers, lets the caller clean up and print its line, and exits at once. Nothing
is lost by exiting there: arr_coc/publish/swap.py holds signals back during the swap, and a staging folder
left behind is removed by the next build (arr_coc/publish/staging.py).

Workers forked during the build ignore SIGINT (a terminal's Ctrl-C reaches the whole process
group; the parent acts on it), die on a plain SIGTERM (what `Pool.terminate()` sends), and die
with the parent (the pool may fork a replacement worker the parent never sees).
"""

import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Callable, Iterable, Optional

from .errors import exception_chain

logger = logging.getLogger(__name__)

_HANDLING = False  # set inside interrupts_raise(); read in processes forked meanwhile
# How long the main thread waits on other threads before it looks at the signals again (wait_for).
SIGNAL_CHECK_SECONDS = 0.2


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, as an exception."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interrupts_raise(stop_now: Callable[[int], None]):
    """SIGINT and SIGTERM raise Interrupted; with worker processes alive, they are killed,
    `stop_now(signum)` runs, and the process exits with 128 + signum."""
    global _HANDLING
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            return
        workers = _child_processes()
        if not workers:
            raise Interrupted(signum)
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            stop_now(signum)
        finally:
            os._exit(128 + signum)

    with _handlers(handler):
        _HANDLING = True
        try:
            yield
        finally:
            _HANDLING = False


@contextlib.contextmanager
def held_signals():
    """Hold SIGINT and SIGTERM back for the block, then deliver them (only the main thread has handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        with _handlers(lambda signum, frame: received.append(signum)):
            yield
    finally:
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


@contextlib.contextmanager
def _handlers(handler):
    """SIGINT and SIGTERM go to `handler` for the block; the previous handlers come back after it."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def exit_on_interrupt(message: Callable[[int], str]) -> None:
    """Until another handler replaces it: SIGINT and SIGTERM print `error: <message(signum)>` and end
    the process at once with 128 + signum. For the moments with nothing to clean up or roll back: a
    script's imports (a traceback from deep in them otherwise) and, once a command's work is done or
    reported, its last prints and interpreter shutdown (the default SIGTERM action otherwise)."""

    def handler(signum, frame):
        with contextlib.suppress(Exception):  # the signal may have come in the middle of a print
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.write(f"error: {message(signum)}\n")
            sys.stderr.flush()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def wait_for(futures: Iterable[concurrent.futures.Future]) -> None:
    """Wait until every future is done; a SIGINT or SIGTERM raises here within SIGNAL_CHECK_SECONDS,
    whichever thread the kernel gave it to.

    Linux hands a process's signal to any thread that does not block it, not always the main one (a
    thread being created at that moment takes it, for one). Python's handler then only waits for the
    main thread to come back to Python code. An untimed wait (future.result(), pool.map, a join)
    would keep it blocked until that future is done (with a stalled download, for minutes, or until
    a second Ctrl-C reaches the main thread). A wait that times out brings it back every
    SIGNAL_CHECK_SECONDS."""
    futures = list(futures)
    while concurrent.futures.wait(futures, timeout=SIGNAL_CHECK_SECONDS).not_done:
        pass


def release_quietly(error: BaseException) -> None:
    """Free the objects that `error`'s frames hold, now, with their finalizers' complaints sent to
    the debug log instead of stderr.

    An interrupt (or any failure) can leave an object half-built or half-written: a tqdm bar stopped
    between its `disable` and its `pos` (its __del__ then raises AttributeError), datasets'
    ParquetWriter whose file datasets has already closed. Collected later, each prints an
    "Exception ignored in ..." traceback after the command's one-line error. Collected here, their
    reports are expected and say nothing the line has not said."""
    previous = sys.unraisablehook

    def to_debug_log(unraisable):
        logger.debug("after %s: %s ignored in %r", type(error).__name__, unraisable.exc_type.__name__, unraisable.object)

    sys.unraisablehook = to_debug_log
    try:
        traceback.clear_frames(error.__traceback__)
        gc.collect()
    finally:
        sys.unraisablehook = previous


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def signal_of(error: BaseException) -> Optional[int]:
    """The signal behind an error, if any: datasets may turn an interrupt into another error on its way out."""
    for candidate in exception_chain(error):
        if isinstance(candidate, Interrupted):
            return candidate.signum
        if isinstance(candidate, KeyboardInterrupt):
            return signal.SIGINT
    return None


def ignore_interrupts_from_now_on() -> None:
    """For a command that is over and has said how it ended. While Python shuts down it puts the default
    action back for every signal that has a Python handler, so a SIGTERM then (taken by any thread) would
    turn finished, reported work into a bare exit -15. An ignored signal stays ignored through shutdown."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _child_processes() -> list[int]:
    import multiprocessing

    pids = {child.pid for child in multiprocessing.active_children()}
    with contextlib.suppress(ImportError):  # datasets' pools come from `multiprocess`
        import multiprocess

        pids.update(child.pid for child in multiprocess.active_children())
    return sorted(pid for pid in pids if pid)


def _worker_signals() -> None:
    global _HANDLING
    if not _HANDLING:
        return
    _HANDLING = False
    parent = os.getppid()
    with contextlib.suppress(ValueError):  # forked from another thread than the main one
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended before the line above
            os._exit(128 + signal.SIGKILL)


os.register_at_fork(after_in_child=_worker_signals)
