"""The tracking server seen from a client: is the URI a server, does it answer, is an error a lost connection."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

from flexseg.errors import FlexsegError

# MLflow's own defaults retry a dead server for minutes per call (7 retries, backoff factor 2, 120 s
# timeout). These bound a refused connection to seconds and a silent one to about a minute; a variable
# already set in the environment wins.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def is_server(uri: str) -> bool:
    """True for an `http://` or `https://` tracking URI (an `mlflow server`), False for a local store."""
    return uri.lower().startswith(("http://", "https://"))


def limit_http_retries() -> None:
    """Bound MLflow's HTTP retries and timeout for this process (`HTTP_LIMITS`, unless already set)."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


def probe(uri: str, timeout: float = 2.0, tries: int = 3, pause: float = 1.0) -> str | None:
    """Ask the server's `/health` endpoint whether it answers.

    Any HTTP answer counts (an authenticating proxy's 401 too); only no connection does not.
    At most `tries * (timeout + pause)` seconds.

    Returns:
        None when the server answers, else why not (e.g. 'Connection refused').
    """
    reason = "no answer"
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                return None
        except urllib.error.HTTPError:
            return None
        except (urllib.error.URLError, OSError) as err:
            cause = getattr(err, "reason", err)
            reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return reason


def require_server(uri: str) -> None:
    """Stop, naming the URI and what to do, when the tracking server at `uri` does not answer.

    Also bounds MLflow's HTTP retries for this process (`limit_http_retries`). A local store (not
    `http(s)://`) passes unchecked.

    Raises:
        FlexsegError: when `probe` gets no answer (within about 10 s).
    """
    if not is_server(uri):
        return
    limit_http_retries()
    reason = probe(uri)
    if reason is not None:
        raise FlexsegError(
            f"tracking.uri={uri}: the MLflow server does not answer ({reason}). Start it (`make server` in the "
            "folder that holds its mlflow.db), or track into a local store: tracking.uri=sqlite:///mlflow.db."
        )


def _connection_types() -> tuple[type[BaseException], ...]:
    import requests
    import urllib3

    return (ConnectionError, TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.RetryError, urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)


def is_connection_error(err: BaseException) -> bool:
    """Whether `err` (or an error it was raised from) says the tracking store cannot be reached.

    MLflow wraps a refused or timed-out HTTP request (after its retries) in an `MlflowException`
    raised while handling the `requests` error; a locked or vanished SQLite store raises SQLAlchemy's
    `OperationalError`. Both count; a rejected request (a bad value, a missing run) does not.
    """
    types, seen = _connection_types(), set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, types) or (name == "OperationalError" and "sqlalchemy" in type(current).__module__):
            return True
        current = current.__cause__ or current.__context__
    return False
