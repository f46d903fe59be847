"""kserve's own ``KServeClient`` (run from ``.venv-kserve``) against the kube stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time

import pytest

from kfp_bridge.local.kube.processes import kserve_python

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import kubernetes
    from kubernetes.client import V1ObjectMeta
    from kserve.api_client import ApiClient as KServeApiClient
    from kserve import (KServeClient, V1beta1InferenceService, V1beta1InferenceServiceSpec,
                        V1beta1ModelFormat, V1beta1ModelSpec, V1beta1PredictorSpec, constants)

    kubeconfig, v1, v2 = sys.argv[1:4]
    NEW_CLIENT = int(kubernetes.__version__.split(".")[0]) >= 37


    class Body(dict):
        # kubernetes>=37 validates request bodies as plain dicts and rejects kserve model objects
        # (and its own serializer would emit snake_case); KServeClient still reads .api_version
        # and .metadata, so carry both next to the camelCase body kserve's serializer produces.
        def __init__(self, model):
            super().__init__(KServeApiClient().sanitize_for_serialization(model))
            self.api_version = model.api_version
            self.metadata = model.metadata


    def body(model):
        return Body(model) if NEW_CLIENT else model


    kc = KServeClient(config_file=kubeconfig)
    isvc = V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(name="kc", namespace="default"),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(
            model=V1beta1ModelSpec(model_format=V1beta1ModelFormat(name="sklearn"), storage_uri=v1))),
    )
    out = {"kubernetes": kubernetes.__version__}
    created = kc.create(body(isvc))
    out["created_generation"] = created["metadata"]["generation"]
    kc.wait_isvc_ready("kc", namespace="default", watch=True, timeout_seconds=90)
    out["ready_after_watch"] = kc.is_isvc_ready("kc", namespace="default")
    got = kc.get("kc", namespace="default")
    out["rev1"] = got["status"]["components"]["predictor"]["latestReadyRevision"]

    isvc.spec.predictor.canary_traffic_percent = 30
    isvc.spec.predictor.model.storage_uri = v2
    patched = kc.patch("kc", body(isvc), namespace="default")
    out["patched_generation"] = patched["metadata"]["generation"]
    kc.wait_isvc_ready("kc", namespace="default", watch=True, timeout_seconds=90, expected_generation=2)
    got = kc.get("kc", namespace="default")
    out["ready_gen2"] = kc.is_isvc_ready("kc", namespace="default", expected_generation=2)
    out["traffic"] = sorted((t["revisionName"], t["percent"]) for t in got["status"]["components"]["predictor"]["traffic"])

    # replace() GETs the resourceVersion first (only with model objects); polling wait uses is_isvc_ready.
    isvc.spec.predictor.canary_traffic_percent = 100
    if NEW_CLIENT:
        isvc.metadata.resource_version = kc.get("kc", namespace="default")["metadata"]["resourceVersion"]
    replaced = kc.replace("kc", body(isvc), namespace="default")
    out["replaced_generation"] = replaced["metadata"]["generation"]
    kc.wait_isvc_ready("kc", namespace="default", polling_interval=0.1, timeout_seconds=60, expected_generation=3)
    got = kc.get("kc", namespace="default")
    out["rolled_out"] = got["status"]["components"]["predictor"]["latestRolledoutRevision"]
    out["listed"] = [o["metadata"]["name"] for o in kc.get(namespace="default")["items"]]
    try:
        kc.get("missing", namespace="default")
    except RuntimeError as exc:
        out["missing_error"] = str(exc)
    out["deleted"] = bool(kc.delete("kc", namespace="default")["metadata"].get("deletionTimestamp"))
    print("RESULT " + json.dumps(out))
    """
)


def test_kserve_client_create_wait_patch_replace_delete(kube_stand_in, iris_models, tmp_path):
    script = tmp_path / "kserve_client_check.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [
            kserve_python(),
            str(script),
            str(kube_stand_in.kubeconfig),
            f"file://{iris_models.v1}",
            f"file://{iris_models.v2}",
        ],
        capture_output=True,
        text=True,
        timeout=480,
        env=env,
        cwd=tmp_path,
    )
    result_lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result_lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(result_lines[-1][len("RESULT ") :])
    assert out["created_generation"] == 1 and out["ready_after_watch"] is True
    assert out["rev1"] == "kc-predictor-00001"
    assert out["patched_generation"] == 2 and out["ready_gen2"] is True
    assert out["traffic"] == [["kc-predictor-00001", 70], ["kc-predictor-00002", 30]]
    assert out["replaced_generation"] == 3
    assert out["rolled_out"] == "kc-predictor-00002"
    assert "kc" in out["listed"]
    assert "(404)" in out["missing_error"]
    # Was a Status "Success": a custom resource's DELETE returns the object, still holding KServe's
    # finalizer, marked with deletionTimestamp (fidelity S6).
    assert out["deleted"] is True
    # The object goes once the controller has torn it down and dropped its finalizer, a moment later
    # (as on a cluster): poll for the 404 instead of expecting it on the next read.
    deadline = time.monotonic() + 60
    while True:
        try:
            kube_stand_in.get_isvc("kc")
        except Exception as gone:  # noqa: BLE001 - the client's ApiException
            assert getattr(gone, "status", None) == 404
            break
        assert time.monotonic() < deadline, "InferenceService kc still present 60 s after its DELETE"
        time.sleep(0.5)
