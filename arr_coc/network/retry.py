"""One bounded retry policy for every network read of a build.

Whole-file downloads, range reads of zip members, per-image URLs and streamed annotation members
all go through `with_retries`, so they fail the same way: connection errors, timeouts (including a
body that stalls longer than `read_timeout`), truncated bodies, 429 and 5xx are retried with
exponential backoff and full jitter, honouring `Retry-After`; other 4xx are not retried. A give-up
is a `NetworkError` whose message is one line naming the URL, the byte range and the last status or
error. A definite "not there" (a real 404, not fsspec's FileNotFoundError for any failed HEAD) is
`NotThere`, the only failure a caller may count as a missing image.

The loop itself is tenacity's (stop after N attempts or before the time budget would be passed,
jittered exponential wait): a well-kept library instead of a hand-written loop.

Environment (for `load_dataset` / builder users; `scripts/build.py` has flags for the first two):
    ARR_COC_MAX_RETRIES=N            retries after the first attempt (N + 1 attempts in all; default 7)
    ARR_COC_RETRY_MAX_SECONDS=S      total time budget of one read, waits included (default 900)
    ARR_COC_READ_TIMEOUT=S           a connect or a body read that stalls this long is a timeout (default 60)
    ARR_COC_RETRY_BACKOFF_INITIAL=S  first backoff window (default 1); doubles per retry ...
    ARR_COC_RETRY_BACKOFF_MAX=S      ... up to this (default 60); Retry-After is honoured up to this too
"""

import asyncio
import email.utils
import http.client
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

import tenacity

from ..process.errors import SourceFormatError, exception_chain

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENV_MAX_RETRIES = "ARR_COC_MAX_RETRIES"
ENV_MAX_SECONDS = "ARR_COC_RETRY_MAX_SECONDS"
ENV_READ_TIMEOUT = "ARR_COC_READ_TIMEOUT"
ENV_BACKOFF_INITIAL = "ARR_COC_RETRY_BACKOFF_INITIAL"
ENV_BACKOFF_MAX = "ARR_COC_RETRY_BACKOFF_MAX"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one network read tries. `max_attempts` counts the first try: retries = max_attempts - 1."""

    max_attempts: int = 8
    max_seconds: float = 900.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    read_timeout: float = 60.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("max_seconds", "backoff_initial", "backoff_max", "read_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def max_retries(self) -> int:
        return self.max_attempts - 1

    @classmethod
    def from_env(cls, **overrides) -> "RetryPolicy":
        """The defaults, then the environment variables, then `overrides` (None = not overridden).

        `max_retries=N` is accepted as an override too and means `max_attempts=N + 1`.
        """
        values = {}
        retries = _env_number(ENV_MAX_RETRIES, int)
        if retries is not None:
            values["max_attempts"] = retries + 1
        for name, variable in (
            ("max_seconds", ENV_MAX_SECONDS),
            ("read_timeout", ENV_READ_TIMEOUT),
            ("backoff_initial", ENV_BACKOFF_INITIAL),
            ("backoff_max", ENV_BACKOFF_MAX),
        ):
            value = _env_number(variable, float)
            if value is not None:
                values[name] = value
        retries = overrides.pop("max_retries", None)
        if retries is not None:
            values["max_attempts"] = retries + 1
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def environ(self) -> dict:
        """The environment variables that give this policy to another process (a builder run elsewhere)."""
        return {
            ENV_MAX_RETRIES: str(self.max_retries),
            ENV_MAX_SECONDS: repr(self.max_seconds),
            ENV_READ_TIMEOUT: repr(self.read_timeout),
            ENV_BACKOFF_INITIAL: repr(self.backoff_initial),
            ENV_BACKOFF_MAX: repr(self.backoff_max),
        }


def _env_number(variable: str, kind):
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise ValueError(f"{variable}={text!r} must be >= 0")
    return value


def _where(url: str, byte_range: Optional[tuple[int, int]]) -> str:
    """"URL bytes a-b" (an inclusive range, as HTTP writes it), or the URL alone."""
    return url if byte_range is None else f"{url} bytes {byte_range[0]}-{byte_range[1] - 1}"


class NetworkError(OSError):
    """Give-up after retries: str() is one line naming the URL, the byte range (if any) and the last status or error."""

    def __init__(self, url: str, byte_range: Optional[tuple[int, int]], last_error: str, attempts: int = 1, status: Optional[int] = None):
        self.url = url
        self.byte_range = tuple(byte_range) if byte_range is not None else None
        self.last_error = last_error
        self.attempts = attempts
        self.status = status
        where = _where(url, byte_range)
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(" ".join(f"{where}: network read failed after {tries}: {last_error}".split()))

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        # Shards may fail inside `num_proc` workers; the error must survive the trip back.
        return type(self), (self.url, self.byte_range, self.last_error, self.attempts, self.status)


class NotThere(FileNotFoundError):
    """A definite 404 / absent member: the only failure that may become missing_image."""

    def __init__(self, url: str, why: str = "not found (HTTP 404)"):
        self.url = url
        self.why = why
        super().__init__(f"{url}: {why}")

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return type(self), (self.url, self.why)


class TruncatedBody(OSError):
    """Fewer bytes arrived than the server announced or than were asked for: retryable."""


# -- classifying errors ---------------------------------------------------------------------------

_RETRYABLE_STATUSES = {408, 425, 429}


def http_status(error: BaseException) -> Optional[int]:
    """The real HTTP status behind an error (also behind fsspec's FileNotFoundError for a failed HEAD)."""
    for candidate in exception_chain(error):
        status = getattr(candidate, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
        response = getattr(candidate, "response", None)
        code = getattr(response, "status_code", None)  # requests
        if isinstance(code, int):
            return code
        if isinstance(response, dict):  # botocore ClientError
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def _retry_after(error: BaseException) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if the error carries one."""
    for candidate in exception_chain(error):
        headers = getattr(candidate, "headers", None)
        try:
            value = headers.get("Retry-After") if headers is not None else None
        except AttributeError:
            value = None
        if value is None:
            continue
        value = str(value).strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def _is_definite_absence(error: BaseException) -> bool:
    if isinstance(error, NotThere):
        return True
    status = http_status(error)
    if status is not None:
        return status == 404
    # fsspec raises a bare FileNotFoundError for a real 404 (and a local file that is not there);
    # a FileNotFoundError caused by something else (its failed-HEAD wrapper) is not an absence.
    return isinstance(error, FileNotFoundError) and error.__cause__ is None


def _retryable_type(error: BaseException) -> bool:
    try:
        import aiohttp

        if isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            return True
    except ImportError:  # pragma: no cover - aiohttp is a requirement
        pass
    try:
        from fsspec.exceptions import FSTimeoutError

        if isinstance(error, FSTimeoutError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        if isinstance(error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import botocore.exceptions

        if isinstance(error, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            return True
    except ImportError:
        pass
    return isinstance(
        error,
        (TruncatedBody, ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror, http.client.IncompleteRead),
    )


def is_retryable(error: BaseException) -> bool:
    """Connection errors, timeouts, truncated bodies, 429 and 5xx: yes. A 404 or any other 4xx: no."""
    if isinstance(error, NetworkError) or _is_definite_absence(error):
        return False
    status = http_status(error)
    if status is not None:
        return status in _RETRYABLE_STATUSES or status >= 500
    return any(_retryable_type(candidate) for candidate in exception_chain(error))


def _is_network_failure(error: BaseException) -> bool:
    """A failure of the transfer itself (as opposed to bad data or a bug): becomes a NetworkError."""
    return is_retryable(error) or http_status(error) is not None


def describe(error: BaseException) -> str:
    """The last status or error, short: 'HTTP 503 Service Unavailable' or 'ServerDisconnectedError: ...'."""
    status = http_status(error)
    if status is not None:
        reason = next((getattr(c, "message", None) or getattr(c, "reason", None) for c in exception_chain(error) if getattr(c, "status", None) == status), None)
        if not isinstance(reason, str) or not reason:
            reason = http.client.responses.get(status, "")
        return f"HTTP {status} {reason}".strip()
    innermost = exception_chain(error)[-1] if not isinstance(error, TruncatedBody) else error
    text = " ".join(str(innermost).split())
    name = type(innermost).__name__
    return f"{name}: {text}" if text else name


# -- the loop -----------------------------------------------------------------------------------


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    backoff = tenacity.wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def wait(state: tenacity.RetryCallState) -> float:
        seconds = backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = _retry_after(error) if error is not None else None
        if retry_after is not None:
            # Honour the server's wish, but never past backoff_max: the total budget stays bounded.
            seconds = max(seconds, min(retry_after, policy.backoff_max))
        return seconds

    return wait


def _log_retry(url: str, byte_range):
    def before_sleep(state: tenacity.RetryCallState) -> None:
        where = _where(url, byte_range)
        logger.warning(
            "%s: %s; retry %d in %.1fs",
            where,
            describe(state.outcome.exception()),
            state.attempt_number,
            state.upcoming_sleep,
        )

    return before_sleep


def with_retries(fn: Callable[[], T], *, url: str, byte_range: Optional[tuple[int, int]] = None, policy: Optional[RetryPolicy] = None) -> T:
    """`fn()` under the policy. Raises NotThere for a definite absence, NetworkError for a network failure
    that retries did not cure (or that must not be retried, like a 403), and any other error unchanged."""
    policy = policy or RetryPolicy.from_env()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_before_delay(policy.max_seconds),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=_log_retry(url, byte_range),
        reraise=True,
    )
    try:
        return retrying(fn)
    except (NotThere, NetworkError):
        raise
    except Exception as error:  # noqa: BLE001 - classified below, everything else re-raised as it is
        if _is_definite_absence(error):
            raise NotThere(url) from error
        if _is_network_failure(error):
            attempts = retrying.statistics.get("attempt_number", 1)
            raise NetworkError(url, byte_range, describe(error), attempts=attempts, status=http_status(error)) from error
        if not isinstance(error, SourceFormatError):  # that one names its file already
            name_the_url(error, url)
        raise


def name_the_url(error: BaseException, url: str) -> None:
    """Note on an error we pass on unchanged (a filesystem's credential or connection error) which URL
    it came from: its own message often does not say (botocore's "Unable to locate credentials")."""
    note = f"reading {url}"
    if note not in getattr(error, "__notes__", ()):
        error.add_note(note)


def http_client_kwargs(policy: Optional[RetryPolicy] = None) -> dict:
    """fsspec HTTPFileSystem `client_kwargs` that make a stalled connect or body read a timeout.

    No total timeout: a large ranged GET may legitimately take long; only silence is an error.
    """
    import aiohttp

    policy = policy or RetryPolicy.from_env()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.read_timeout, sock_read=policy.read_timeout)
    return {"timeout": timeout}


def filesystem_for(url: str, policy: Optional[RetryPolicy] = None):
    """(fsspec filesystem, path) for a URL; http(s) gets the policy's read timeout."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol in ("http", "https"):
        return fsspec.filesystem(protocol, client_kwargs=http_client_kwargs(policy)), url
    try:
        return fsspec.core.url_to_fs(url)  # some filesystems (ftp, sftp) connect right here
    except Exception as error:
        name_the_url(error, url)
        raise


__all__ = [
    "RetryPolicy",
    "NetworkError",
    "NotThere",
    "TruncatedBody",
    "is_retryable",
    "with_retries",
    "http_status",
    "describe",
    "filesystem_for",
    "http_client_kwargs",
]
