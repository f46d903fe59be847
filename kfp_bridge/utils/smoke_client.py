"""The HTTP side of a smoke test: one request to the model's URL, retried while the route warms up.

KServe's URLs are host names (``http://<isvc>.<ns>.<domain>``, tag routes
``http://latest-<isvc>-predictor.<ns>.<domain>``) that the ingress routes by Host header (fidelity
S4); from a worker outside the cluster they often do not resolve. With ``ingress_address`` the
request goes to the ingress gateway with the model's host name in the ``Host`` header instead.
The clock and the sleeper are injected so tests never sleep for real.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kfp_bridge.utils import smoke

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({502, 503, 504})  # the route or the activator is not ready yet
DEFAULT_BUDGET_S = 30.0
RETRY_PAUSE_S = 1.0
_RESOLVE_ERRORS = ("Name or service not known", "nodename nor servname", "name resolution", "No address associated")


def validate_ingress_address(value: Any) -> str | None:
    """``http(s)://host[:port]`` (or ``host[:port]``, taken as http) or None; ValueError naming the fix."""
    if value is None:
        return None
    hint = "the ingress gateway's address, e.g. http://10.0.0.7:80 or 10.0.0.7:8080 (no path)"
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"ingress_address must be {hint}, got {value!r} ({type(value).__name__})")
    address = value if "://" in value else f"http://{value}"
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or port == -1:
        raise ValueError(f"ingress_address must be {hint}, got {value!r}")
    return address.rstrip("/")


def _resolve_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror) or any(text in str(seen) for text in _RESOLVE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SmokeClient:
    """Sends a smoke-test spec (see :mod:`kfp_bridge.utils.smoke`) to a model URL.

    :param ingress_address: send to this address with the URL's host in the ``Host`` header.
    :param budget: seconds to keep retrying 502/503/504 and connection errors.
    :param clock: monotonic clock. :param sleep: sleeper.
    :param transport: httpx transport (tests); default the network.
    """

    def __init__(
        self,
        *,
        ingress_address: str | None = None,
        budget: float = DEFAULT_BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.ingress_address = validate_ingress_address(ingress_address)
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        self.transport = transport
        self.log = log or logging.getLogger(__name__)

    def target(self, url: str, path: str) -> tuple[str, dict[str, str]]:
        """(request URL, headers) for ``path`` under the model ``url``."""
        parts = urlsplit(url)
        full_path = f"{parts.path.rstrip('/')}/{path.lstrip('/')}"
        if self.ingress_address is None:
            return f"{parts.scheme}://{parts.netloc}{full_path}", {}
        return f"{self.ingress_address}{full_path}", {"Host": parts.netloc}

    def run(self, spec: dict[str, Any], url: str, name: str, namespace: str = "") -> list[str]:
        """Problems found (empty: passed). Never raises: every failure is a problem, so the caller rolls back."""
        import httpx

        try:
            target, headers = self.target(url, smoke.request_path(spec, name, namespace))
        except Exception as exc:  # a URL KServe did not give us in the expected form
            return [f"cannot build the smoke-test request for {url!r}: {type(exc).__name__}: {exc}"]
        via = f" via {self.ingress_address} (Host: {headers['Host']})" if headers else ""
        deadline = self.clock() + self.budget
        problems = ["no attempt made"]
        with httpx.Client(transport=self.transport, timeout=float(spec.get("timeout", 10))) as http:
            while True:
                retry = False
                try:
                    resp = http.post(target, json=spec["payload"], headers=headers)
                except httpx.HTTPError as exc:
                    if _resolve_failure(exc):
                        host = urlsplit(target).hostname
                        return [
                            f"the host {host!r} of {target} does not resolve from this worker ({exc}); KServe "
                            "URLs are host names routed by the ingress: set ingress_address (operator argument "
                            "or the Kubernetes connection's extra 'ingress_address') to the ingress gateway's "
                            "address, e.g. http://<ingress IP>:80"
                        ]
                    problems = [f"request to {target}{via} failed: {type(exc).__name__}: {exc}"]
                    retry = True
                else:
                    body: Any
                    try:
                        body = resp.json()
                    except ValueError:
                        body = resp.text
                    try:
                        problems = smoke.check_response(spec, resp.status_code, body)
                    except Exception as exc:  # a response the checks cannot read: a failed smoke test
                        problems = [f"cannot check the response {str(body)[:200]!r}: {type(exc).__name__}: {exc}"]
                    retry = resp.status_code in RETRY_STATUSES and bool(problems)
                if not retry or self.clock() + RETRY_PAUSE_S > deadline:
                    break
                self.sleep(RETRY_PAUSE_S)
        self.log.info("Smoke test against %s%s: %s", target, via, "passed" if not problems else problems)
        return problems
