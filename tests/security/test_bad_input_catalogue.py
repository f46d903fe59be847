"""The bad-input catalogue (issue 13 item 6): hostile or malformed inputs and what each one does.

Every row feeds one input to a real component (KfpRunOperator / KfpRunSensor / KServeRolloutOperator /
KServePromoteOperator / KServeRollbackOperator ``execute``, the ``kfp`` connection through KfpHook.test_connection, ``python -m kfp_bridge.cli``,
the KFP stand-in's REST API, the kube stand-in's API) and checks two things:

* the user sees a clear error that names the input (``expect``: a regex on the error text);
* nothing happened: the KFP stand-in holds the same experiments, pipelines and runs (list calls'
  ``total_size``), and for rows that must not reach KFP at all its admin request counter did not
  move; the kube stand-in's InferenceService list has the same resourceVersion; the CLI wrote no
  state directory.

One test walks the whole table (so xdist cannot split it) and regenerates docs/security.md with the
summary line ``N inputs, N clear errors, 0 side effects`` and the table. XSS payloads in the
on-call plugin's path parameters are covered in a real browser by tests/ui/test_oncall_xss.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.fixtures.kube_stand_in import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"
IRIS = REPO / "dags" / "pipelines" / "iris.yaml"
GOOD_PARAMS = {"model_dir": "/tmp/model"}
API = "/apis/v2beta1"
KFP_CONN = "kfp_catalogue"
KUBE_CONN = "kube_catalogue"


@dataclass
class Row:
    input: str  # what the user typed, as shown in the table
    where: str  # which component received it
    action: Callable[[], str]  # returns the error text the user sees; must not return without one
    expect: str  # regex the error text must match (it names the input)
    reaches_kfp: bool = False  # True only for rows that are themselves requests to the KFP stand-in


class NoError(AssertionError):
    pass


def _error_of(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except Exception as err:  # noqa: BLE001 - the row records whatever the user would see
        return f"{type(err).__name__}: {err}"
    raise NoError(f"accepted without an error (returned {str(result)[:200]!r})")


# ----- context for operators outside Airflow (validation happens before any Airflow call) -----------
class _TI:
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class _Store(dict):
    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def _context(dag_folder: Path) -> dict[str, Any]:
    dag = SimpleNamespace(dag_id="security_catalogue", fileloc=str(dag_folder / "catalogue_dag.py"))
    return {"dag": dag, "run_id": "manual__catalogue", "ti": _TI(), "task_state_store": _Store(),
            "dag_run": None, "logical_date": None}


# ----- the table -------------------------------------------------------------------------------------
def _rows(kfp, kube, folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[Row]:
    from kfp_bridge.hooks.kfp import KfpHook
    from kfp_bridge.operators.kfp import KfpRunOperator
    from kfp_bridge.operators.kserve import KServeRolloutOperator
    from kfp_bridge.operators.kserve_release import KServePromoteOperator, KServeRollbackOperator
    from kfp_bridge.sensors.kfp import KfpRunSensor
    from kfp_bridge.utils import release as rel
    from tests.unit.utils.test_release import _isvc, _rollout

    def run_op(**kwargs: Any) -> Callable[[], str]:
        def call() -> Any:
            args = {"pipeline": "iris.yaml", "params": dict(GOOD_PARAMS), "kfp_conn_id": KFP_CONN,
                    "deferrable": False, "poll_interval": 0.5, **kwargs}
            return KfpRunOperator(task_id="catalogue", **args).execute(_context(folder))

        return lambda: _error_of(call)

    def sensor(**kwargs: Any) -> Callable[[], str]:
        args = {"run_id": "5f0c1d2e-0000-4000-8000-000000000001", "kfp_conn_id": KFP_CONN, "poke_interval": 1,
                "timeout": 5, **kwargs}
        return lambda: _error_of(lambda: KfpRunSensor(task_id="catalogue_sensor", **args).execute(_context(folder)))

    def rollout(**kwargs: Any) -> Callable[[], str]:
        args = {"inference_service": "catalogue-model", "namespace": "default", "storage_uri": "/models/v2",
                "kubernetes_conn_id": KUBE_CONN, "deferrable": False, "timeout": 30, **kwargs}
        return lambda: _error_of(
            lambda: KServeRolloutOperator(task_id="catalogue_rollout", **args).execute(_context(folder))
        )

    def release(cls: type, **kwargs: Any) -> Callable[[], str]:
        args = {"kubernetes_conn_id": KUBE_CONN, "deferrable": False, "timeout": 30, **kwargs}
        return lambda: _error_of(lambda: cls(task_id="catalogue_release", **args).execute(_context(folder)))

    def record(**changes: Any) -> dict[str, Any]:
        """A canary record as KServeRolloutOperator(promote=False) returns it, with ``changes`` (tampered)."""
        return {"outcome": "canary", "recorded": {**rel.record_canary(_rollout(), _isvc()).to_json(), **changes}}

    def connection(host: str, **extra: Any) -> Callable[[], str]:
        def call() -> str:
            body = {"conn_type": "kfp", "host": host, "password": kfp.token, "extra": extra}
            monkeypatch.setenv("AIRFLOW_CONN_KFP_CATALOGUE_BAD", json.dumps(body))
            ok, message = KfpHook(kfp_conn_id="kfp_catalogue_bad").test_connection()
            if ok:
                raise NoError(f"test_connection succeeded: {message}")
            return f"test_connection: {message}"

        return call

    def connection_raw(body: dict[str, Any]) -> Callable[[], str]:
        def call() -> str:
            monkeypatch.setenv("AIRFLOW_CONN_KFP_CATALOGUE_BAD", json.dumps(body))
            ok, message = KfpHook(kfp_conn_id="kfp_catalogue_bad").test_connection()
            if ok:
                raise NoError(f"test_connection succeeded: {message}")
            return f"test_connection: {message}"

        return call

    def rest(method: str, path: str, **kwargs: Any) -> Callable[[], str]:
        def call() -> str:
            with httpx.Client(base_url=kfp.host, headers=kfp.headers(), timeout=60) as http:
                response = http.request(method, path, **kwargs)
            if response.status_code < 400:
                raise NoError(f"HTTP {response.status_code}: {response.text[:200]}")
            return f"HTTP {response.status_code}: {response.json().get('message', response.text)[:300]}"

        return call

    def rest_empty(path: str, params: dict[str, str]) -> Callable[[], str]:
        """A query the server must answer as data (no match), never as SQL."""

        def call() -> str:
            with httpx.Client(base_url=kfp.host, headers=kfp.headers(), timeout=60) as http:
                response = http.get(path, params=params)
            if response.status_code >= 400:
                return f"HTTP {response.status_code}: {response.json().get('message', '')[:300]}"
            body = response.json()
            if any(body.get(k) for k in ("runs", "experiments", "pipelines")):
                raise NoError(f"the filter matched rows: {str(body)[:200]}")
            return f"HTTP {response.status_code}: no match (the value was compared as text, not run as SQL)"

        return call

    def kube_request(method: str, path: str, **kwargs: Any) -> Callable[[], str]:
        def call() -> str:
            with kube.http() as http:
                response = http.request(method, path, **kwargs)
            if response.status_code < 400:
                raise NoError(f"HTTP {response.status_code}: {response.text[:200]}")
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            return f"HTTP {response.status_code}: {message[:300]}"

        return call

    def cli(*args: str) -> Callable[[], str]:
        def call() -> str:
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            done = subprocess.run([sys.executable, "-m", "kfp_bridge.cli", *args], capture_output=True, text=True,
                                  timeout=120, cwd=folder, env=env)
            if done.returncode == 0:
                raise NoError(f"exit 0: {done.stdout[-200:]}")
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            return f"exit {done.returncode}: {lines[-1] if lines else '(no message)'}"

        return call

    # files the rows point at
    shutil.copy(IRIS, folder / "iris.yaml")
    outside = folder.parent / "outside-dag-folder"
    outside.mkdir(exist_ok=True)
    (outside / "credentials.yaml").write_text("aws_secret_access_key: AKIA-CATALOGUE-SECRET\n")
    laughs = ['    a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"    a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (folder / "laughs.yaml").write_text(
        IRIS.read_text() + "---\nbomb:\n" + "\n".join(laughs) + "\n"
    )
    (folder / "laughs_in_spec.yaml").write_text(
        "pipelineInfo:\n  name: laughs\nroot:\n  dag:\n    tasks: {}\ndeploymentSpec:\n  bomb:\n" + "\n".join(laughs) + "\n"
    )
    (folder / "python_tag.yaml").write_text(
        "pipelineInfo: !!python/object/apply:os.system ['touch pwned-by-yaml']\nroot: {}\n"
    )
    (folder / "deep.yaml").write_text("pipelineInfo: " + "[" * 5000 + "]" * 5000 + "\nroot: {}\n")
    (folder / "not_a_pipeline.py").write_text("X = 1\n")

    xss = "<img src=x onerror=alert(1)>"
    sql = "x' OR '1'='1' --"
    return [
        # --- KfpRunOperator: arguments (after rendering) ---
        Row("timeout=0", "KfpRunOperator", run_op(timeout=0), r"'timeout'.*greater than 0.*got 0"),
        Row("timeout=-60", "KfpRunOperator", run_op(timeout=-60), r"'timeout'.*got -60"),
        Row("timeout=timedelta(0)", "KfpRunOperator", run_op(timeout=timedelta(0)), r"'timeout'.*timedelta"),
        Row("timeout='600' (a string)", "KfpRunOperator", run_op(timeout="600"), r"'timeout'.*got '600'"),
        Row("poll_interval=-1", "KfpRunOperator", run_op(poll_interval=-1), r"'poll_interval'.*got -1"),
        Row("enable_caching='false'", "KfpRunOperator", run_op(enable_caching="false"),
            r"'enable_caching'.*boolean.*'false' would be read as true"),
        Row("deferrable='no'", "KfpRunOperator", run_op(deferrable="no"), r"'deferrable'.*got 'no'"),
        Row("namespace='' (template rendered empty)", "KfpRunOperator", run_op(namespace=""),
            r"'namespace'.*rendered to nothing"),
        Row("namespace='team_a/../kubeflow'", "KfpRunOperator", run_op(namespace="team_a/../kubeflow"),
            r"'namespace'.*DNS-1123.*team_a/\.\./kubeflow"),
        Row("experiment= 129 characters", "KfpRunOperator", run_op(experiment="e" * 129),
            r"'experiment'.*at most 128"),
        Row("experiment='' (blank)", "KfpRunOperator", run_op(experiment="  "), r"'experiment'.*non-empty"),
        Row("run_name= 256 characters (oversized)", "KfpRunOperator", run_op(run_name="r" * 256),
            r"'run_name'.*at most 255"),
        Row("run_name with newline and NUL", "KfpRunOperator", run_op(run_name="nightly\n\x00injected"),
            r"'run_name'.*control characters"),
        Row("run_name with U+202E (bidi override)", "KfpRunOperator", run_op(run_name="run\u202egpj.exe"),
            r"'run_name'.*control characters"),
        Row(f"service_account='{xss}'", "KfpRunOperator", run_op(service_account=xss),
            r"'service_account'.*DNS-1123.*<img"),
        Row("service_account='default; rm -rf /'", "KfpRunOperator", run_op(service_account="default; rm -rf /"),
            r"'service_account'.*DNS-1123"),
        Row("on_rerun='always'", "KfpRunOperator", run_op(on_rerun="always"), r"'on_rerun'.*'retry', 'new_run'.*'always'"),
        # --- KfpRunOperator: the pipeline reference and its file ---
        Row("pipeline='../../etc/passwd'", "KfpRunOperator", run_op(pipeline="../../etc/passwd"),
            r"pipeline '\.\./\.\./etc/passwd' is not a compiled pipeline"),
        Row("pipeline='../../../../../etc/hosts.yaml'", "KfpRunOperator",
            run_op(pipeline="../../../../../../../etc/hosts.yaml"), r"/etc/hosts\.yaml does not exist.*DAG folder"),
        Row("pipeline=absolute YAML outside the DAG folder (not a pipeline)", "KfpRunOperator",
            run_op(pipeline=str(outside / "credentials.yaml")), r"credentials\.yaml is not a compiled KFP v2 pipeline"),
        Row("pipeline=YAML with 10^9 aliases (billion laughs)", "KfpRunOperator", run_op(pipeline="laughs.yaml"),
            r"'pipeline'.*YAML alias \(\*a0"),
        Row("pipeline=billion laughs inside a Struct field", "KfpRunOperator", run_op(pipeline="laughs_in_spec.yaml"),
            r"'pipeline'.*YAML alias"),
        Row("pipeline=YAML with !!python/object/apply tag", "KfpRunOperator", run_op(pipeline="python_tag.yaml"),
            r"python_tag\.yaml is not valid YAML.*python/object"),
        Row("pipeline=YAML nested 5000 levels deep", "KfpRunOperator", run_op(pipeline="deep.yaml"),
            r"deep\.yaml"),
        Row("pipeline='os:system'", "KfpRunOperator", run_op(pipeline="os:system"), r"'system' in module os is not a KFP pipeline"),
        Row("pipeline='not_a_pipeline.py'", "KfpRunOperator", run_op(pipeline="not_a_pipeline.py"),
            r"not_a_pipeline\.py"),
        # --- KfpRunOperator: parameter values ---
        Row("params max_iter='{{ params.n }}' (unrendered Jinja)", "KfpRunOperator",
            run_op(params={**GOOD_PARAMS, "max_iter": "{{ params.n }}"}), r"max_iter.*\{\{ params\.n \}\}"),
        Row("params C='abc'", "KfpRunOperator", run_op(params={**GOOD_PARAMS, "C": "abc"}), r"'C'.*'abc'"),
        Row(f"params {{'{xss}': 1}} (undeclared name)", "KfpRunOperator",
            run_op(params={**GOOD_PARAMS, xss: 1}), r"<img src=x"),
        Row("params without the required model_dir", "KfpRunOperator", run_op(params={}), r"model_dir"),
        # --- KfpRunSensor ---
        Row("run_id='../../apis/v2beta1/runs'", "KfpRunSensor", sensor(run_id="../../apis/v2beta1/runs"),
            r"'run_id'.*\.\./\.\./apis"),
        Row("run_id='abc?filter=...'", "KfpRunSensor", sensor(run_id="abc?filter=%7B%7D"), r"'run_id'.*abc\?filter"),
        Row("poke_interval=0 (deferrable)", "KfpRunSensor", sensor(poke_interval=0, deferrable=True), r"'poke_interval'"),
        # --- kfp connection (test_connection; nothing may reach KFP) ---
        Row("host http://kfp.example.test with a static token", "kfp connection",
            connection(f"http://kfp.example.test:{kfp.port}"), r"plain http.*https.*allow_insecure_token"),
        Row("host http://203.0.113.9 with a token file", "kfp connection",
            connection_raw({"conn_type": "kfp", "host": f"http://203.0.113.9:{kfp.port}",
                            "extra": {"token_path": str(kfp.token_file)}}), r"token file.*plain http"),
        Row("allow_insecure_token='sure'", "kfp connection",
            connection(f"http://kfp.example.test:{kfp.port}", allow_insecure_token="sure"),
            r"'allow_insecure_token' must be true or false"),
        Row("host 'javascript:alert(1)'", "kfp connection", connection("javascript:alert(1)"), r"not an http\(s\) URL"),
        Row("host with port 99999", "kfp connection", connection("http://127.0.0.1:99999"), r"invalid port"),
        Row("extra '{\"namespace\": ' (broken JSON)", "kfp connection",
            connection_raw({"conn_type": "kfp", "host": kfp.host, "extra": '{"namespace": '}), r"extra field is not valid JSON"),
        Row("extra ca_cert='/etc' (a directory)", "kfp connection", connection(kfp.host, ca_cert="/etc"),
            r"'ca_cert'.*not a file"),
        # --- KServeRolloutOperator (validation before any cluster call) ---
        Row(f"inference_service='{xss}'", "KServeRolloutOperator", rollout(inference_service=xss),
            r"inference_service must be.*<img"),
        Row("inference_service='{{ params.name }}' (unrendered)", "KServeRolloutOperator",
            rollout(inference_service="{{ params.name }}"), r"inference_service must be"),
        Row("namespace='' (template rendered empty)", "KServeRolloutOperator", rollout(namespace=""),
            r"namespace must be.*render empty"),
        Row("storage_uri='file://../../etc'", "KServeRolloutOperator", rollout(storage_uri="file://../../etc"),
            r"storage_uri .*absolute path"),
        Row("storage_uri with newline", "KServeRolloutOperator", rollout(storage_uri="s3://b/m\nx"),
            r"storage_uri .*whitespace"),
        Row("canary_traffic_percent='20' (a string)", "KServeRolloutOperator",
            rollout(canary_traffic_percent="20"), r"canary_traffic_percent.*\(str\)"),
        Row("promote='false'", "KServeRolloutOperator", rollout(promote="false"), r"promote must be True or False"),
        Row("timeout=-1", "KServeRolloutOperator", rollout(timeout=-1), r"timeout must be positive"),
        # --- KServePromoteOperator / KServeRollbackOperator (the record is read before any cluster call) ---
        Row("neither rollout_task_id nor rollout", "KServePromoteOperator", release(KServePromoteOperator),
            r"needs exactly one of rollout_task_id.*got neither"),
        Row("rollout='{not json' (a string)", "KServePromoteOperator", release(KServePromoteOperator, rollout="{not json"),
            r"rollout is a string that is not JSON"),
        Row("rollout= a promote=True result (nothing recorded)", "KServePromoteOperator",
            release(KServePromoteOperator, rollout={"outcome": "promoted", "recorded": None}),
            r"no recorded canary.*set promote=False"),
        Row("rollout record version 99", "KServePromoteOperator",
            release(KServePromoteOperator, rollout=record(version=99)), r"record version 99"),
        Row(f"rollout record inference_service='{xss}'", "KServePromoteOperator",
            release(KServePromoteOperator, rollout=record(inference_service=xss)),
            r"inference_service '<img.*is not an InferenceService name"),
        Row("rollout record namespace='../kube-system'", "KServeRollbackOperator",
            release(KServeRollbackOperator, rollout=record(namespace="../kube-system")),
            r"namespace '\.\./kube-system' is not a Kubernetes namespace"),
        Row("rollout record previous_uri='file://../../etc'", "KServeRollbackOperator",
            release(KServeRollbackOperator, rollout=record(previous_uri="file://../../etc")),
            r"previous_uri: .*absolute path"),
        Row("rollout record without target_uri", "KServePromoteOperator",
            release(KServePromoteOperator, rollout=record(target_uri=None)), r"recorded canary is incomplete.*target_uri"),
        Row("reason=3", "KServeRollbackOperator", release(KServeRollbackOperator, rollout=record(), reason=3),
            r"reason must be a string, got 3"),
        Row("skip_if_succeeded=''", "KServeRollbackOperator",
            release(KServeRollbackOperator, rollout=record(), skip_if_succeeded=""), r"skip_if_succeeded must be a task id"),
        Row("timeout=0", "KServePromoteOperator", release(KServePromoteOperator, rollout=record(), timeout=0),
            r"timeout must be positive"),
        # --- CLI ---
        Row("kfp-bridge local kfp --port notaport", "CLI", cli("local", "kfp", "--port", "notaport",
                                                               "--state-dir", "cli-state"), r"--port.*notaport"),
        Row("kfp-bridge local nope", "CLI", cli("local", "nope"), r"invalid choice: 'nope'"),
        Row("kfp-bridge compile ../../../../etc/passwd", "CLI", cli("compile", "../../../../etc/passwd"),
            r"etc/passwd.*not a compiled pipeline"),
        Row("kfp-bridge compile 'missing\\x01.py'", "CLI", cli("compile", "missing\x01.py"),
            r"missing.*\.py does not exist"),
        # --- KFP stand-in REST API ---
        Row("POST /experiments, text/plain body", "KFP stand-in", rest(
            "POST", f"{API}/experiments", content=b"display_name=x", headers={"content-type": "text/plain"}),
            r"HTTP 400.*not valid JSON", reaches_kfp=True),
        Row("POST /runs, truncated JSON", "KFP stand-in", rest(
            "POST", f"{API}/runs", content=b'{"display_name": "x"', headers={"content-type": "application/json"}),
            r"HTTP 400.*not valid JSON", reaches_kfp=True),
        Row(f"GET /runs filter display_name == \"{sql}\"", "KFP stand-in", rest_empty(f"{API}/runs", {
            "filter": json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": sql}]})}),
            r"no match", reaches_kfp=True),
        Row("GET /runs filter key 'display_name; DROP TABLE runs'", "KFP stand-in", rest("GET", f"{API}/runs", params={
            "filter": json.dumps({"predicates": [{"key": "display_name; DROP TABLE runs", "operation": "EQUALS",
                                                  "string_value": "x"}]})}),
            r"HTTP 400.*DROP TABLE runs' is not supported", reaches_kfp=True),
        Row("GET /runs filter='%zz' (bad escape)", "KFP stand-in", rest("GET", f"{API}/runs", params={"filter": "%zz"}),
            r"HTTP 400", reaches_kfp=True),
        Row("GET /runs filter='not json'", "KFP stand-in", rest("GET", f"{API}/runs", params={"filter": "not json"}),
            r"HTTP 400", reaches_kfp=True),
        Row("GET /runs/..%2F..%2Fetc%2Fpasswd", "KFP stand-in", rest("GET", f"{API}/runs/..%2F..%2Fetc%2Fpasswd"),
            r"HTTP 404", reaches_kfp=True),
        Row("DELETE /experiments/' OR 1=1 --", "KFP stand-in", rest("DELETE", f"{API}/experiments/' OR 1=1 --"),
            r"HTTP (400|404)", reaches_kfp=True),
        # --- kube stand-in API ---
        Row("POST isvc, body that is not JSON", "kube stand-in", kube_request(
            "POST", f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}", content=b"{not json",
            headers={"content-type": "application/json"}), r"HTTP 400"),
        Row("POST isvc, YAML body as text/plain", "kube stand-in", kube_request(
            "POST", f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
            content=b"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n",
            headers={"content-type": "text/plain"}), r"HTTP 4\d\d"),
        Row("POST isvc, canaryTrafficPercent='fifty'", "kube stand-in", kube_request(
            "POST", f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
            json={"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
                  "metadata": {"name": "catalogue-bad-canary", "namespace": "default"},
                  "spec": {"predictor": {"canaryTrafficPercent": "fifty",
                                         "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m"}}}}),
            r"HTTP 4\d\d.*canaryTrafficPercent"),
        Row("PATCH isvc (missing), merge patch that is not JSON", "kube stand-in", kube_request(
            "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/catalogue-absent", content=b"{not json",
            headers={"content-type": "application/merge-patch+json"}), r"HTTP 4\d\d"),
    ]


# ----- proofs -----------------------------------------------------------------------------------
def _kfp_counts(kfp) -> dict[str, int]:
    counts = {}
    with httpx.Client(base_url=kfp.host, headers=kfp.headers(), timeout=60) as http:
        for kind in ("experiments", "pipelines", "runs"):
            response = http.get(f"{API}/{kind}", params={"page_size": 1})
            response.raise_for_status()
            counts[kind] = int(response.json().get("total_size") or 0)
    return counts


def _kube_version(kube) -> dict[str, tuple]:
    """What a client writes: each InferenceService's generation, spec, labels and annotations.

    Not the list's resourceVersion: the controller's status writes (a model server of an earlier
    test becoming ready) move it while a refused call writes nothing.
    """
    listing = kube.api().list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    return {
        item["metadata"]["name"]: (
            item["metadata"].get("generation"),
            json.dumps(item.get("spec"), sort_keys=True),
            json.dumps(item["metadata"].get("labels"), sort_keys=True),
            json.dumps(item["metadata"].get("annotations"), sort_keys=True),
        )
        for item in listing["items"]
    }


class _NetworkSpy:
    """Records name lookups and connections the process starts (for rows that must send nothing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, allowed_ports: set[int]) -> None:
        self.attempts: list[str] = []
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
        spy = self

        def getaddrinfo(host, port, *args, **kwargs):
            if port not in allowed_ports:
                spy.attempts.append(f"lookup {host}:{port}")
            return real_getaddrinfo(host, port, *args, **kwargs)

        def connect(sock, address):
            if isinstance(address, tuple) and address[1] not in allowed_ports:
                spy.attempts.append(f"connect {address}")
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)


# ----- the test ---------------------------------------------------------------------------------
def test_bad_input_catalogue(kfp_stand_in, kube_stand_in, tmp_path, monkeypatch):
    kfp, kube = kfp_stand_in, kube_stand_in
    monkeypatch.setenv(f"AIRFLOW_CONN_{KFP_CONN.upper()}", json.dumps(
        {"conn_type": "kfp", "host": kfp.host, "extra": {"token_path": str(kfp.token_file)}}))
    monkeypatch.setenv(f"AIRFLOW_CONN_{KUBE_CONN.upper()}", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig),
                                              "ingress_address": kube.ingress_url}}))
    folder = tmp_path / "dags"
    folder.mkdir()
    rows = _rows(kfp, kube, folder, monkeypatch)
    stand_in_ports = {kfp.port, int(kube.url.rsplit(":", 1)[1].split("/")[0])}
    spy = _NetworkSpy(monkeypatch, stand_in_ports)

    results: list[tuple[Row, str, list[str]]] = []
    for row in rows:
        counts_before, version_before = _kfp_counts(kfp), _kube_version(kube)
        requests_before = kfp.stats()["total"]
        spy.attempts.clear()
        problems: list[str] = []
        try:
            error = row.action()
        except NoError as err:
            error, problems = str(err), [f"no error: {err}"]
        requests_after = kfp.stats()["total"]
        if not re.search(row.expect, error, re.DOTALL):
            problems.append(f"error does not match {row.expect!r}")
        if kfp.token and kfp.token in error:
            problems.append("the error shows the bearer token")
        if not row.reaches_kfp and requests_after != requests_before:
            problems.append(f"{requests_after - requests_before} request(s) reached the KFP stand-in")
        if row.where != "CLI" and spy.attempts:
            problems.append(f"network attempts outside the stand-ins: {spy.attempts}")
        if _kfp_counts(kfp) != counts_before:
            problems.append(f"KFP objects changed: {counts_before} -> {_kfp_counts(kfp)}")
        if _kube_version(kube) != version_before:
            problems.append("an InferenceService was created, deleted or written")
        results.append((row, error, problems))

    assert not (folder / "cli-state").exists(), "the CLI created a state directory for a refused command"
    assert not (folder / "pwned-by-yaml").exists(), "a YAML tag ran code"
    _write_doc(results)
    failures = [f"{row.where} | {row.input}: {problems} -- {error[:300]}" for row, error, problems in results if problems]
    assert not failures, "\n".join(failures)
    assert len(results) >= 40


def _cell(text: str, limit: int = 160) -> str:
    # temporary paths and ports change every run; the generated file should not
    # (xdist adds a popen-gwN level; the numbered folder under it goes too, so both write the same file)
    text = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/(popen-gw\d+/)?[^/\s]+?\d+/", "<tmp>/", text)
    text = re.sub(r"127\.0\.0\.1:\d{4,5}", "127.0.0.1:<port>", text)
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _write_doc(results: list[tuple[Row, str, list[str]]]) -> None:
    clear = sum(1 for _, _, problems in results if not any(p.startswith(("no error", "error does not")) for p in problems))
    effects = sum(1 for _, _, problems in results if any(not p.startswith(("no error", "error does not"))
                                                          for p in problems))
    lines = [
        "# Security: bad input",
        "",
        "Generated by `tests/security/test_bad_input_catalogue.py` (do not edit by hand; rerun it:",
        "`.venv/bin/python -m pytest -n 0 -p no:cacheprovider tests/security/test_bad_input_catalogue.py`).",
        "",
        "Each input goes to the real component: the operators' `execute`, `KfpHook.test_connection`,",
        "`python -m kfp_bridge.cli`, the KFP stand-in's REST API and the kube stand-in's API. A row passes",
        "when the error names the input, no KFP experiment, pipeline or run appeared (list `total_size`),",
        "the KFP stand-in counted no request for rows that must not reach it, no name lookup or",
        "connection left for another host, the InferenceService list kept its resourceVersion, and the",
        "error does not show the bearer token. XSS payloads in every path parameter of the on-call",
        "plugin are checked in Chromium by `tests/ui/test_oncall_xss.py`.",
        "",
        f"**{len(results)} inputs, {clear} clear errors, {effects} side effects**",
        "",
        "| # | input | where | error the user sees (excerpt) |",
        "|---|---|---|---|",
    ]
    for number, (row, error, problems) in enumerate(results, 1):
        shown = error if not problems else f"FAILED ({'; '.join(problems)}): {error}"
        lines.append(f"| {number} | {_cell(row.input, 80)} | {row.where} | {_cell(shown)} |")
    lines += [
        "",
        "## Tokens on the wire",
        "",
        "A `kfp` connection with a bearer token (password or token file) and an `http://` host that is",
        "not loopback (127.0.0.0/8, ::1, localhost) or a cluster-local service name (`*.svc`,",
        "`*.svc.cluster.local`, a single label such as `ml-pipeline`) is refused when its settings are",
        "read, so `test_connection`, the operator, the sensor, the trigger and the plugin all stop before",
        "any request. Use an https:// host, or set the extra `allow_insecure_token: true` deliberately",
        "(e.g. inside a service mesh with mTLS). `tests/security/test_token_transport.py` proves it against",
        "a stand-in listening on a non-loopback address. Cluster IPs (10.x) over http count as public:",
        "use the service name (`ml-pipeline.kubeflow.svc.cluster.local`) or the extra.",
        "",
        "## Operator arguments",
        "",
        "`KfpRunOperator` and `KfpRunSensor` check every argument at the top of `execute`, after",
        "rendering and before any request: `timeout` and `poll_interval`/`poke_interval` are numbers or",
        "timedeltas above 0; `enable_caching` and `deferrable` are real booleans (`\"false\"` is an error,",
        "not True); `namespace`, when given, is a non-empty DNS-1123 label (an empty template no longer",
        "falls back to the connection's); `experiment` is at most 128 characters and `run_name` at most",
        "255 (KFP 2.17: `experiments.Name varchar(128)`, run `DisplayName` VARCHAR(255) through GORM's",
        "`DefaultStringSize`), neither with control, bidi or zero-width characters; `service_account` is",
        "a DNS-1123 subdomain; `on_rerun` is `retry` or `new_run`; the sensor's `run_id` has no `/`, `?`",
        "or `..`. A compiled pipeline YAML that uses aliases (a \"billion laughs\" file) is refused before",
        "it is parsed: the KFP compiler never writes them.",
        "",
        "`KServePromoteOperator` and `KServeRollbackOperator` read the canary record (the rollout task's",
        "return value, or `rollout=`) before any cluster call and check it as untrusted input: its kind",
        "and version, every field's type, the InferenceService name and namespace (DNS-1123), and both",
        "storage URIs by the same rules as `storage_uri`. A record edited by hand or rendered from a",
        "template cannot aim a promotion at another namespace or model path.",
        "",
    ]
    DOC.write_text("\n".join(lines))


# ----- the stand-ins refuse what the real servers refuse (these were strict-xfail gaps until fixed) -----
def test_kube_stand_in_refuses_an_invalid_object_name_like_the_api_server(kube_stand_in):
    """apimachinery IsDNS1123Subdomain on create: 422 Invalid, before any webhook."""
    name = "catalogue.Bad_Name"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/nonexistent-model"}}}}
    with kube_stand_in.http() as http:
        response = http.post(f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}", json=body)
        if response.status_code < 300:
            http.delete(f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/{name}")
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["reason"] == "Invalid" and "RFC 1123 subdomain" in body["message"], body
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_kfp_stand_in_refuses_an_oversized_experiment_name_like_kfp_2_17(kfp_stand_in):
    """KFP 2.17 has no API-level check: MySQL refuses the insert into Name varchar(128) (Error 1406)
    and ExperimentStore.CreateExperiment answers an internal error (500)."""
    with kfp_stand_in.http() as http:
        response = http.post(f"{API}/experiments", json={"display_name": "x" * 100_000})
        if response.status_code < 300:
            http.delete(f"{API}/experiments/{response.json()['experiment_id']}")
    assert response.status_code == 500, "created an experiment with a 100000-character name"
    assert "Data too long for column 'Name'" in response.json()["message"]
