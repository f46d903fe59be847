"""A private kube stand-in: restart keeps objects and brings their model servers back; SIGTERM stops them."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.fixtures.kube_stand_in import start_kube_stand_in

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

V2_BODY = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]],
        }
    ]
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_restart_keeps_objects_and_restarts_model_servers(tmp_path, iris_models):
    state = tmp_path / "kube"
    with start_kube_stand_in(state, token="t0ken") as first:
        first.create_isvc("persist", iris_models.v1)
        before = first.wait_condition("persist", "Ready", generation=1, timeout=180)
        url = first.serving_url("persist")
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{url}/v2/models/persist/ready").status_code == 200
            infer = http.post(f"{url}/v2/models/persist/infer", json=V2_BODY)
        assert infer.status_code == 200 and infer.json()["outputs"][0]["shape"] == [2]
        assert infer.headers["x-kfp-bridge-revision"] == "persist-predictor-00001"
        revisions = first.admin("GET", "stats")["inferenceServices"][0]["revisions"]
        pids = [r["pid"] for r in revisions if r["running"]]
        assert len(pids) == 1 and _alive(pids[0])
        proc = first.process
    assert proc.returncode == 0, "SIGTERM should stop the stand-in cleanly"
    assert not _alive(pids[0]), "the model server must stop with the stand-in"

    with start_kube_stand_in(state, token="t0ken") as second:
        after = second.get_isvc("persist")
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert int(after["metadata"]["resourceVersion"]) >= int(before["metadata"]["resourceVersion"])
        assert after["status"]["components"]["predictor"]["latestReadyRevision"] == "persist-predictor-00001"
        # The router holds the request until the revision's model server is back (Knative's activator).
        with httpx.Client(timeout=240) as http:
            resp = http.post(
                f"{second.serving_url('persist')}/v1/models/persist:predict",
                json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
            )
        assert resp.status_code == 200 and resp.json() == {"predictions": [1]}
        assert resp.headers["x-kfp-bridge-revision"] == "persist-predictor-00001"
        labelled = second.patch_isvc("persist", {"metadata": {"labels": {"restarted": "yes"}}})
        assert int(labelled["metadata"]["resourceVersion"]) > int(after["metadata"]["resourceVersion"])
        new_pids = [
            r["pid"]
            for r in second.admin("GET", "stats")["inferenceServices"][0]["revisions"]
            if r["running"]
        ]
        assert new_pids and new_pids != pids
    assert not any(_alive(pid) for pid in new_pids)
