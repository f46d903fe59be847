"""KServe canary semantics (contracts C.5) with real KServe model servers behind the stand-in router.

One InferenceService walks through steps 1, 2, 3b, 3a, 3b' of the C.5 table and then a failed
load; each step checks the status and counts which revision answered real router requests, sent
to the ingress with the status URLs' host names as Host header (fidelity S4), as a gateway is.
"""

from __future__ import annotations

import math
import threading
from collections import Counter

import httpx
import pytest

from tests.fixtures.kube_stand_in import condition, predictor_status

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

REVISION_HEADER = "x-kfp-bridge-revision"
IRIS_ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]


INGRESS = ""  # set per test: the stand-in's ingress address


def _predict(http: httpx.Client, url: str, name: str) -> httpx.Response:
    """``url`` is a KServe host-name URL (sent to the ingress with that Host) or a path URL."""
    if url.startswith(INGRESS):
        return http.post(f"{url}/v1/models/{name}:predict", json={"instances": IRIS_ROWS})
    host = url.removeprefix("http://")
    return http.post(
        f"{INGRESS}/v1/models/{name}:predict", json={"instances": IRIS_ROWS}, headers={"host": host}
    )


@pytest.fixture(autouse=True)
def _ingress(kube_stand_in):
    global INGRESS
    INGRESS = kube_stand_in.ingress_url


def _served_by(url: str, name: str, n: int) -> Counter:
    counts: Counter = Counter()
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            resp = _predict(http, url, name)
            assert resp.status_code == 200, resp.text
            assert len(resp.json()["predictions"]) == 2
            counts[resp.headers[REVISION_HEADER]] += 1
    return counts


def _traffic(obj) -> list[tuple]:
    return sorted(
        (t["revisionName"], t["latestRevision"], t["percent"], t.get("tag"))
        for t in predictor_status(obj).get("traffic", [])
    )


def _wait_transition(kube_stand_in, name: str, generation: int, transition: str, *, what: str) -> dict:
    """Wait until ``generation`` is observed and ``modelStatus.transitionStatus`` is ``transition``."""
    return kube_stand_in.wait_for(
        name,
        lambda o: (
            o["status"].get("observedGeneration") == generation
            and o["status"]["modelStatus"]["transitionStatus"] == transition
        ),
        timeout=180,
        what=what,
    )


def test_canary_walk_through(kube_stand_in, iris_models):
    name = "canary"
    r1, r2, r3 = (f"{name}-predictor-{n:05d}" for n in (1, 2, 3))
    url = f"http://{name}.default.{kube_stand_in.domain}"
    annotations = {"serving.kserve.io/enable-tag-routing": "true"}

    # Step 1: create. The single 100 % target carries the latest tag too (fidelity S3).
    kube_stand_in.create_isvc(name, iris_models.v1, annotations=annotations)
    obj = kube_stand_in.wait_condition(name, "Ready", generation=1, timeout=180)
    pred = predictor_status(obj)
    assert _traffic(obj) == [(r1, True, 100, "latest")]
    assert (
        pred["latestReadyRevision"],
        pred["latestRolledoutRevision"],
        pred["previousRolledoutRevision"],
    ) == (r1, r1, "")
    assert obj["status"]["url"] == url and obj["status"]["modelStatus"]["transitionStatus"] == "UpToDate"
    assert {c["type"] for c in obj["status"]["conditions"]} == {
        "IngressReady",
        "LatestDeploymentReady",
        "PredictorConfigurationReady",
        "PredictorReady",
        "PredictorRouteReady",
        "Ready",
        "RoutesReady",
        "Stopped",
    }
    assert _served_by(url, name, 10) == Counter({r1: 10})
    assert _served_by(kube_stand_in.serving_url(name), name, 3) == Counter({r1: 3})  # path routing extra

    # Step 2: new model with a 20% canary, visible in status once r2 is ready.
    kube_stand_in.patch_isvc(
        name,
        {
            "spec": {
                "predictor": {"canaryTrafficPercent": 20, "model": {"storageUri": f"file://{iris_models.v2}"}}
            }
        },
    )
    obj = kube_stand_in.wait_for(
        name, lambda o: predictor_status(o).get("latestReadyRevision") == r2, timeout=180, what="r2 ready"
    )
    assert condition(obj, "Ready") == "True" and obj["status"]["observedGeneration"] == 2
    assert _traffic(obj) == [(r1, False, 80, "prev"), (r2, True, 20, "latest")]
    assert predictor_status(obj)["latestRolledoutRevision"] == r1
    by_tag = {t["tag"]: t["url"] for t in predictor_status(obj)["traffic"]}
    assert by_tag == {
        "latest": f"http://latest-{name}-predictor.default.{kube_stand_in.domain}",
        "prev": f"http://prev-{name}-predictor.default.{kube_stand_in.domain}",
    }
    assert _served_by(by_tag["prev"], name, 5) == Counter({r1: 5})
    assert _served_by(by_tag["latest"], name, 5) == Counter({r2: 5})
    # Binomial(n=200, p=0.2): mean 40, sd 5.66; accept within 4 sd (false-failure odds ~1e-4).
    n, p = 200, 0.2
    counts = _served_by(url, name, n)
    tolerance = 4 * math.sqrt(n * p * (1 - p))
    assert set(counts) <= {r1, r2}
    assert abs(counts[r2] - n * p) <= tolerance, counts

    # Step 3b: pin the previous revision with canaryTrafficPercent 0.
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    obj = kube_stand_in.wait_for(
        name, lambda o: _traffic(o) == [(r1, False, 100, "prev"), (r2, True, 0, "latest")], what="3b traffic"
    )
    assert predictor_status(obj)["latestRolledoutRevision"] == r1
    assert _served_by(url, name, 20) == Counter({r1: 20})

    # Step 3a: promote by removing the field (merge patch null).
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    obj = kube_stand_in.wait_for(name, lambda o: _traffic(o) == [(r2, True, 100, "latest")], what="3a traffic")
    pred = predictor_status(obj)
    assert (pred["latestRolledoutRevision"], pred["previousRolledoutRevision"]) == (r2, r1)
    assert _served_by(url, name, 20) == Counter({r2: 20})

    # Step 3b': 0 after promoting: the rollback rule resets latestRolledout, then prev points at r1.
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    obj = kube_stand_in.wait_for(
        name, lambda o: _traffic(o) == [(r1, False, 100, "prev"), (r2, True, 0, "latest")], what="3b' traffic"
    )
    assert predictor_status(obj)["latestRolledoutRevision"] == r1
    assert _served_by(url, name, 20) == Counter({r1: 20})

    # A model that fails to load: r3 stays not ready, the last ready revision serves 100%, no request fails.
    failures: list[str] = []
    served: Counter = Counter()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                resp = _predict(http, url, name)
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text}")
                served[resp.headers.get(REVISION_HEADER)] += 1

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        kube_stand_in.patch_isvc(
            name,
            {
                "spec": {
                    "predictor": {
                        "canaryTrafficPercent": None,
                        "model": {"storageUri": f"file://{iris_models.broken}"},
                    }
                }
            },
        )
        obj = kube_stand_in.wait_condition(name, "PredictorReady", "False", generation=6, timeout=180)
    finally:
        stop.set()
        worker.join(30)
    status = obj["status"]
    pred = predictor_status(obj)
    assert (pred["latestCreatedRevision"], pred["latestReadyRevision"]) == (r3, r2)
    assert _traffic(obj) == [(r2, True, 100, "latest")]
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert status["modelStatus"]["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    assert "failed to load model" in status["modelStatus"]["lastFailureInfo"]["message"]
    predictor_ready = next(c for c in status["conditions"] if c["type"] == "PredictorReady")
    assert (
        predictor_ready["reason"] == "RevisionFailed" and "failed to load model" in predictor_ready["message"]
    )
    assert condition(obj, "Ready") == "False"
    assert failures == []
    assert sum(served.values()) > 0 and set(served) <= {r1, r2}
    assert _served_by(url, name, 20) == Counter({r2: 20})


def test_standard_mode_ignores_canary(kube_stand_in, iris_models):
    name = "std"
    url = kube_stand_in.serving_url(name)
    kube_stand_in.create_isvc(
        name, iris_models.v1, annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}
    )
    obj = kube_stand_in.wait_condition(name, "Ready", generation=1, timeout=180)
    status = obj["status"]
    assert {c["type"] for c in status["conditions"]} == {"PredictorReady", "IngressReady", "Ready", "Stopped"}
    assert status["deploymentMode"] == "Standard"
    assert status["url"] == f"http://{name}-default.{kube_stand_in.domain}"  # the raw domainTemplate
    assert (
        "traffic" not in status["components"]["predictor"]
        and "latestCreatedRevision" not in status["components"]["predictor"]
    )
    first = _served_by(url, name, 5)
    assert len(first) == 1

    kube_stand_in.patch_isvc(
        name,
        {
            "spec": {
                "predictor": {"canaryTrafficPercent": 20, "model": {"storageUri": f"file://{iris_models.v2}"}}
            }
        },
    )
    obj = _wait_transition(kube_stand_in, name, 2, "UpToDate", what="replacement deployment serving")
    assert condition(obj, "Ready") == "True"
    assert "traffic" not in obj["status"]["components"]["predictor"]
    after = _served_by(url, name, 40)
    # Everything goes to the replacement: canaryTrafficPercent is ignored in Standard mode.
    assert len(after) == 1 and set(after).isdisjoint(first)
    stats = kube_stand_in.admin("GET", "stats")
    std = next(s for s in stats["inferenceServices"] if s["name"] == name)
    assert sum(1 for r in std["revisions"] if r["running"]) == 1

    # A replacement that fails to load: the old server keeps answering (the Deployment stays
    # Available, so Ready stays True, as in KServe) and modelStatus reports the failed load.
    kube_stand_in.patch_isvc(
        name, {"spec": {"predictor": {"model": {"storageUri": f"file://{iris_models.broken}"}}}}
    )
    obj = _wait_transition(kube_stand_in, name, 3, "BlockedByFailedLoad", what="failed replacement reported")
    assert condition(obj, "Ready") == "True"
    assert obj["status"]["modelStatus"]["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    assert _served_by(url, name, 10) == Counter({next(iter(after)): 10})
