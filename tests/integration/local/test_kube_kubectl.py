"""The real ``kubectl`` against the kube stand-in, with nothing but its generated kubeconfig.

A real API server is HTTPS with a CA in the kubeconfig; kubectl sends no bearer token over plain
HTTP, discovers resources (``/api``, ``/apis``, short names), fetches ``/openapi/v3`` before a
client-side apply (kubectl ``pkg/cmd/apply/patcher.go``: no strategic merge patch for custom
resources, so a JSON merge patch with the last-applied annotation), and waits/watches with
``fieldSelector=metadata.name``. Server-side apply is refused with a Status (415), which kubectl
reports as "Server-side apply not available". kubectl comes from ``scripts/ensure-kubectl.sh``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.kube_stand_in import KubeStandIn

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

NAME = "kctl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _manifest(folder: Path, model: Path, labels: dict[str, str]) -> Path:
    path = folder / "isvc.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": NAME, "labels": labels},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model}"}}},
            }
        )
    )
    return path


@pytest.fixture
def kubectl(kube_stand_in: KubeStandIn):
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not on PATH: run scripts/ensure-kubectl.sh (make test does)")
    env = {**os.environ, "KUBECONFIG": str(kube_stand_in.kubeconfig), "HOME": str(kube_stand_in.state_dir)}

    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc

    run.env = env  # type: ignore[attr-defined]
    run.binary = binary  # type: ignore[attr-defined]
    return run


def test_kubectl_round_trip(kubectl, kube_stand_in, iris_models, tmp_path):
    resources = kubectl("api-resources").stdout
    for line in ("inferenceservices", "isvc", "deployments", "pods"):
        assert line in resources, resources

    # A rerun after a failed attempt finds that attempt's object: start from none.
    kubectl("delete", "isvc", NAME, "--ignore-not-found", timeout=120)
    manifest = _manifest(tmp_path, iris_models.v1, {"team": "ml"})
    assert "created" in kubectl("apply", "-f", str(manifest)).stdout
    assert "unchanged" in kubectl("apply", "-f", str(manifest)).stdout
    escaped = LAST_APPLIED.replace(".", "\\.")
    last = kubectl("get", "isvc", NAME, "-o", "jsonpath={.metadata.annotations." + escaped + "}").stdout
    assert json.loads(last)["metadata"]["labels"] == {"team": "ml"}
    # A label removed from the manifest is removed by the next apply (three-way merge via last-applied).
    manifest = _manifest(tmp_path, iris_models.v1, {"owner": "me"})
    assert "configured" in kubectl("apply", "-f", str(manifest)).stdout
    labels = json.loads(kubectl("get", "isvc", NAME, "-o", "jsonpath={.metadata.labels}").stdout)
    assert labels == {"owner": "me"}

    ssa = kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert ssa.returncode != 0 and "apply-patch+yaml" in ssa.stderr, ssa.stderr

    kubectl("wait", "--for=condition=Ready", f"isvc/{NAME}", "--timeout=180s", timeout=200)
    url = kubectl("get", "isvc", NAME, "-o", "jsonpath={.status.url}").stdout
    assert url == f"http://{NAME}.default.{kube_stand_in.domain}"

    # get -w: the watch prints the object again when it changes. kubectl (get.go) watches a single
    # object from resourceVersion 0 and drops that watch's first event, so a patch landing between its
    # GET and its watch is never printed, on a real cluster too: patch only once the watch is open.
    watches_before = kube_stand_in.admin("GET", "stats")["watchesOpen"]
    watcher = subprocess.Popen(
        [kubectl.binary, "get", "isvc", NAME, "-w", "-o", "jsonpath={.metadata.labels.step}{\"\\n\"}"],
        env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    got_patch = threading.Event()

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            seen.append(line.strip())
            if line.strip() == "json":
                got_patch.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while kube_stand_in.admin("GET", "stats")["watchesOpen"] <= watches_before:
            assert time.monotonic() < deadline and watcher.poll() is None, f"kubectl get -w never watched: {seen}"
            time.sleep(0.1)
        kubectl("patch", "isvc", NAME, "--type", "merge", "-p", '{"metadata":{"labels":{"step":"merge"}}}')
        kubectl("patch", "isvc", NAME, "--type", "json", "-p", '[{"op":"add","path":"/metadata/labels/step","value":"json"}]')
        assert got_patch.wait(30), f"kubectl get -w printed {seen}"
    finally:
        watcher.kill()
        watcher.wait()
    assert "merge" in seen and seen[-1] == "json"

    assert "deleted" in kubectl("delete", "isvc", NAME, timeout=120).stdout
    gone = kubectl("get", "isvc", NAME, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
