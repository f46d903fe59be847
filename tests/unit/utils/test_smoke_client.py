"""SmokeClient: host-name URLs, the ingress address with a Host header, retries on an injected clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kfp_bridge.utils.smoke_client import SmokeClient, validate_ingress_address

SPEC = {"payload": {"instances": [[1, 2, 3, 4]]}, "expected_shape": [1]}
URL = "http://iris.models.example.com"


class _Ingress(BaseHTTPRequestHandler):
    """Routes by Host header, as an Istio/Kourier gateway does: only the iris host has a model."""

    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["content-length"]))
        self.seen.append((self.headers["host"], self.path))
        ok = self.headers["host"] == "iris.models.example.com" and self.path == "/v1/models/iris:predict"
        body = json.dumps({"predictions": [1]} if ok else {"error": "no route"}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ingress() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingress)
    _Ingress.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_through_the_ingress_address_with_the_host_header(ingress):
    assert SmokeClient(ingress_address=ingress).run(SPEC, URL, "iris", "models") == []
    assert _Ingress.seen == [("iris.models.example.com", "/v1/models/iris:predict")]
    # The tag route is another host name on the same gateway.
    problems = SmokeClient(ingress_address=f"http://{ingress}").run(
        SPEC, "http://latest-iris-predictor.models.example.com", "iris"
    )
    assert problems and "HTTP 404" in problems[0]
    assert _Ingress.seen[-1][0] == "latest-iris-predictor.models.example.com"


def test_a_host_name_that_does_not_resolve_says_to_set_ingress_address():
    (problem,) = SmokeClient(budget=0).run(SPEC, "http://iris.models.no-such-domain.invalid", "iris")
    assert "'iris.models.no-such-domain.invalid'" in problem and "does not resolve from this worker" in problem
    assert "set ingress_address" in problem


def test_retries_503_on_the_injected_clock_then_passes():
    now = [0.0]
    slept: list[float] = []
    answers = iter([503, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        assert request.url == "http://iris.models.example.com/v1/models/iris:predict"
        return httpx.Response(status, json={"predictions": [0]} if status == 200 else {"error": "activating"})

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = SmokeClient(transport=httpx.MockTransport(handler), clock=lambda: now[0], sleep=sleep, budget=10)
    assert client.run(SPEC, URL, "iris") == []
    assert slept == [1.0, 1.0]


def test_gives_up_when_the_budget_is_spent_and_never_raises():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = SmokeClient(transport=httpx.MockTransport(handler), clock=lambda: now[0], sleep=sleep, budget=3)
    (problem,) = client.run(SPEC, URL, "iris")
    assert problem.startswith("request to http://iris.models.example.com/v1/models/iris:predict failed: ConnectError")
    assert now[0] == 3.0

    def not_json_shape(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"predictions": 7})

    problems = SmokeClient(transport=httpx.MockTransport(not_json_shape)).run(
        {**SPEC, "allowed_values": [1]}, URL, "iris"
    )
    assert problems == ["output shape [] != expected [1]", "outputs [7] are not among the allowed values [1]"]


def test_path_based_url_keeps_its_path():
    client = SmokeClient(ingress_address="10.0.0.7:8080")
    assert client.target("http://127.0.0.1:9/serving/ns/iris", "v1/models/iris:predict") == (
        "http://10.0.0.7:8080/serving/ns/iris/v1/models/iris:predict",
        {"Host": "127.0.0.1:9"},
    )


@pytest.mark.parametrize("value", ["", "http://gw/x", "ftp://gw", "gw:notaport", "a b", 8080])
def test_bad_ingress_address(value):
    with pytest.raises(ValueError, match="ingress_address must be"):
        validate_ingress_address(value)


def test_good_ingress_address():
    assert validate_ingress_address("10.0.0.7:8080") == "http://10.0.0.7:8080"
    assert validate_ingress_address("https://gw.example.com/") == "https://gw.example.com"
    assert validate_ingress_address(None) is None
