"""KFP stand-in API semantics as KFP 2.17.0's backend has them (reference/fidelity.md K1, K5, K7–K10).

One test per row, each through the real ``kfp.Client`` (kfp_server_api underneath) and raw httpx
where the client hides the wire; each docstring names the upstream files (kubeflow/pipelines, tag
2.17.0) whose behaviour it asserts. Error bodies are grpc-gateway's: ``message`` is the internal
error chain, ``details[0].message`` the user-facing text (common/util/error.go ``GRPCStatus``).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.parse

import httpx
import kfp
import pytest

from tests.fixtures import kfp_pipelines as pipelines
from tests.fixtures.kfp_stand_in import start_kfp_stand_in
from tests.integration.local.kfp_helpers import (
    api_error,
    compiled_spec,
    error_body,
    history,
    synthetic_runs,
    unique,
    wait_for_state,
)

pytestmark = pytest.mark.integration
API = "/apis/v2beta1"


def _filter(*predicates: dict) -> str:
    return json.dumps({"predicates": list(predicates)})


def _encoded(text: str) -> str:
    """URL-encode a serialized filter once, as the SDK documents and the server expects."""
    return urllib.parse.quote(text, safe="")


# ----- K1 ---------------------------------------------------------------------------------------


def test_k1_filter_is_url_unescaped_a_second_time(kfp_stand_in):
    """K1: ``parseAPIFilter`` calls Go's ``url.QueryUnescape`` on the already-decoded ``filter``
    (backend/src/apiserver/server/list_request_util.go; the pipeline endpoints decode it first in
    pipeline_server.go ``extractTagFiltersFromFilterSpec``). ``+`` becomes a space, so a plain-JSON
    EQUALS on ``...T00:00:00+00:00`` never matches; encoded once it does. A bad ``%`` escape is a 400
    whose message quotes the filter the way Go's ``%q`` does."""
    client = kfp_stand_in.client()
    tag = f"scheduled__2026-01-01T00:00:00+00:00 {unique('k1')}"
    spec = compiled_spec(pipelines.add_and_double)
    with synthetic_runs(kfp_stand_in):
        run = client.runs.run_service_create_run(
            {"display_name": unique("k1"), "description": tag, "pipeline_spec": spec,
             "runtime_config": {"parameters": {"a": 1, "b": 1}}})
        by_description = _filter({"operation": "EQUALS", "key": "description", "string_value": tag})

        plain = client.list_runs(filter=by_description)
        assert plain.runs is None and plain.total_size is None  # '+' arrived as ' ': no match
        once = client.list_runs(filter=_encoded(by_description))
        assert [r.run_id for r in once.runs] == [run.run_id]

        # The same holds for every list endpoint, e.g. experiments.
        name = f"k1 a+b {unique('exp')}"
        experiment = client.create_experiment(name)
        by_name = _filter({"operation": "EQUALS", "key": "display_name", "string_value": name})
        assert client.list_experiments(filter=by_name).experiments is None
        assert [e.experiment_id for e in client.list_experiments(filter=_encoded(by_name)).experiments] == [
            experiment.experiment_id]

    bad = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": "100%"})
    error = api_error(client.list_runs, filter=bad)
    assert error.status == 400
    body = error_body(error)
    quoted = bad.replace('"', '\\"')
    assert body["code"] == 3
    assert body["message"] == (
        f'Failed to create list options: Invalid input error: failed to parse valid filter from "{quoted}": '
        'invalid URL escape "%\\"}"'
    )
    assert body["details"][0]["message"] == f'failed to parse valid filter from "{quoted}": ' + 'invalid URL escape "%\\"}"'

    with kfp_stand_in.http() as http:
        response = http.get(f"{API}/pipelines", params={"filter": '{"predicates": [%zz]}'})
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Failed to list pipelines due to invalid tag filter in filter spec: Invalid input error: "
        'failed to decode filter spec: invalid URL escape "%zz"'
    )


# ----- K5 ---------------------------------------------------------------------------------------


def test_k5_retry_only_a_failed_run_otherwise_409_aborted(kfp_stand_in, tmp_path):
    """K5: ``ResourceManager.RetryRun`` (backend/src/apiserver/resource/resource_manager.go) calls
    ``GenerateRetryExecution`` (backend/src/common/util/workflow.go), which accepts only a workflow
    in phase Failed/Error; anything else is ``NewBadRequestError`` → gRPC Aborted → HTTP 409
    (common/util/error.go), not 400. A failed run is retried in place: its succeeded steps are kept.
    (A node still Pending/Running → 500 is covered in tests/unit/local/test_kfp_service_retry.py.)"""
    client = kfp_stand_in.client()
    pid_file = tmp_path / "pid"
    running = client.create_run_from_pipeline_func(
        pipelines.sleeper, arguments={"seconds": 120.0, "pid_file": str(pid_file)}, run_name=unique("k5-running"))
    succeeded = client.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("k5-done"))
    try:
        wait_for_state(client, running.run_id, {"RUNNING"}, timeout=60)
        for run_id in (running.run_id, wait_for_state(client, succeeded.run_id).run_id):
            error = api_error(client.runs.run_service_retry_run, run_id=run_id)
            assert error.status == 409, (run_id, error.body)
            body = error_body(error)
            assert body["code"] == 10  # Aborted
            assert body["message"] == (
                f"Failed to retry a run: Failed to retry run {run_id}: BadRequestError: "
                "Workflow must be Failed/Error to retry: workflow cannot be retried"
            )
            assert body["details"][0]["message"] == "Workflow must be Failed/Error to retry"
        assert client.get_run(succeeded.run_id).state == "SUCCEEDED"  # nothing changed
    finally:
        client.terminate_run(running.run_id)

    counter, flag = tmp_path / "counter.txt", tmp_path / "flag"
    flaky = client.create_run_from_pipeline_func(
        pipelines.flaky, arguments={"counter": str(counter), "flag": str(flag)}, run_name=unique("k5-flaky"))
    assert wait_for_state(client, flaky.run_id).state == "FAILED"
    flag.write_text("go")
    assert client.runs.run_service_retry_run(run_id=flaky.run_id) == {}
    assert wait_for_state(client, flaky.run_id).state == "SUCCEEDED"
    assert counter.read_text().splitlines() == ["ran"]  # the succeeded step was not run again

    missing = api_error(client.runs.run_service_retry_run, run_id="no-such-run")
    assert missing.status == 404 and "Run no-such-run not found" in missing.body


# ----- K7 ---------------------------------------------------------------------------------------


def test_k7_a_new_run_is_stored_pending_first(kfp_stand_in):
    """K7: ``ResourceManager.CreateRun`` (backend/src/apiserver/resource/resource_manager.go) sets
    ``run.State = RuntimeStatePending`` before storing it, and ``RunStore.CreateRun``
    (storage/run_store.go) starts ``state_history`` with that state; only the persistence agent's
    reports move it on. So the create response, and the first history entry ever, say PENDING."""
    client = kfp_stand_in.client()
    created = client.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("k7"))
    assert created.run_info.state == "PENDING"
    assert history(created.run_info) == ["PENDING"]
    with kfp_stand_in.http() as http:
        raw = http.get(f"{API}/runs/{created.run_id}").json()
    assert raw["state"] in ("PENDING", "RUNNING", "SUCCEEDED")
    assert raw["state_history"][0]["state"] == "PENDING"
    done = wait_for_state(client, created.run_id)
    assert done.state == "SUCCEEDED"
    assert history(done)[0] == "PENDING"


# ----- K8 and K9: multi-user mode ---------------------------------------------------------------

SA = "system:serviceaccount:team-a:default-editor"


def _jwt(exp: float, sub: str = SA) -> str:
    """A projected-token-shaped JWT (the stand-in reads ``exp`` only; signatures are not checked)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part({'sub': sub, 'exp': int(exp)})}.{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def multi_user(tmp_path_factory):
    users = {
        "namespaces": {"alice@example.com": ["team-a"], SA: ["team-a"], "carol@example.com": ["team-b"]},
        "tokens": {
            "tok-alice": {"user": "alice@example.com"},
            "tok-bob": {"user": "bob@example.com"},  # authenticates, may access nothing
            "tok-carol": "carol@example.com",
            "tok-expired": {"user": "alice@example.com", "expires_at": "2020-01-01T00:00:00Z"},
        },
        "token_file_user": SA,
    }
    root = tmp_path_factory.mktemp("kfp-multi-user")
    with start_kfp_stand_in(root / "state", token=_jwt(time.time() + 3600), multi_user=True, users=users) as stand_in:
        yield stand_in


def _client(stand_in, token: str | None = None, **kwargs) -> kfp.Client:
    if token:
        kwargs["existing_token"] = token
    return kfp.Client(host=stand_in.host, **kwargs)


def test_k8_authentication_single_user_none_multi_user_401_403(multi_user, tmp_path):
    """K8: single-user KFP authenticates nothing (``IsAuthorized`` returns at once unless
    ``common.IsMultiUserMode()``, backend/src/apiserver/resource/resource_manager.go). Multi-user:
    the identity comes from the ``kubeflow-userid`` header or a reviewed bearer token
    (apiserver/auth/auth.go, authenticator_http_headers.go, authenticator_token_review.go, util.go);
    none → 401, a SubjectAccessReview denial → 403; healthz checks nothing; a rotated projected
    token stays valid until it expires (the stand-in's model: its ``exp``)."""
    with start_kfp_stand_in(tmp_path / "single", admin=False) as single:
        anonymous = _client(single)
        assert anonymous.get_kfp_healthz().multi_user is False
        assert anonymous.list_runs(namespace="anything").total_size is None
        with httpx.Client(base_url=single.host, headers={"authorization": "Bearer garbage"}) as http:
            assert http.get(f"{API}/experiments").status_code == 200

    with httpx.Client(base_url=multi_user.host, timeout=30) as http:
        health = http.get(f"{API}/healthz")
        assert health.status_code == 200 and health.json()["multi_user"] is True
        assert http.get("/_admin/stats").status_code == 401  # admin hooks need some valid identity

    none = api_error(_client(multi_user).list_runs, namespace="team-a")
    assert none.status == 401
    body = error_body(none)
    assert body["code"] == 16
    assert body["details"][0]["message"] == "Failed to check authorization. User identity is empty in the request header"
    assert body["message"] == (
        "Failed to list runs: Failed to list runs due to authorization error. Check if you have permission to "
        "access namespace team-a: Failed to access run . Check if you have access to namespace team-a: "
        "Unauthenticated: Failed to check authorization. User identity is empty in the request header: "
        "Unauthenticated: Request header error: there is no user identity header.: "
        "Request header error: there is no user identity header."
    )
    for token in ("not-a-token", "tok-expired"):
        error = api_error(_client(multi_user, token).list_runs, namespace="team-a")
        assert error.status == 401, token
        assert "Review.Status.Authenticated is false" in error.body
        assert token not in error.body

    denied = api_error(_client(multi_user, "tok-bob").list_experiments, namespace="team-a")
    assert denied.status == 403
    body = error_body(denied)
    assert body["code"] == 7
    assert body["details"][0]["message"] == (
        "User 'bob@example.com' is not authorized with reason:  (request: &ResourceAttributes{Namespace:team-a,"
        "Verb:list,Group:pipelines.kubeflow.org,Version:v1beta1,Resource:experiments,Subresource:,Name:,"
        "FieldSelector:nil,LabelSelector:nil,})"
    )
    assert api_error(_client(multi_user, "tok-alice").list_runs, namespace="team-b").status == 403
    assert _client(multi_user, "tok-alice").list_runs(namespace="team-a") is not None
    with httpx.Client(base_url=multi_user.host, headers={"kubeflow-userid": "alice@example.com"}) as http:
        assert http.get(f"{API}/runs", params={"namespace": "team-a"}).status_code == 200
        assert http.get(f"{API}/runs", params={"namespace": "team-b"}).status_code == 403

    # A projected token rotated by the kubelet: the old one keeps working until its exp.
    token_path = tmp_path / "sa-token"
    token_path.write_text(multi_user.token)
    reader = kfp.Client(host=multi_user.host,
                        credentials=kfp.client.ServiceAccountTokenVolumeCredentials(path=str(token_path)))
    assert reader.list_experiments(namespace="team-a") is not None
    original = multi_user.token
    stale = _client(multi_user, original)
    short_lived = _jwt(time.time() + 2)
    try:
        multi_user.rotate_token(short_lived)
        token_path.write_text(short_lived)
        assert reader.list_experiments(namespace="team-a") is not None  # the new token
        assert stale.list_experiments(namespace="team-a") is not None  # the rotated-out one, still unexpired
        multi_user.rotate_token(_jwt(time.time() + 3600))
        time.sleep(2.5)
        expired = api_error(_client(multi_user, short_lived).list_experiments, namespace="team-a")
        assert expired.status == 401 and "expired" in expired.body
        assert stale.list_experiments(namespace="team-a") is not None
    finally:
        multi_user.rotate_token(original)


def test_k9_multi_user_needs_a_namespace(multi_user):
    """K9: listing runs or experiments without a namespace (and, for runs, without
    ``experiment_id``) is a 400 before any authentication: ``canAccessRun``/``canAccessExperiment``
    reject an empty namespace (backend/src/apiserver/server/run_server.go, experiment_server.go),
    and a run needs an experiment (resource_manager.go ``GetValidExperimentNamespacePair``). With a
    namespace everything works, scoped to it; another team's user gets 403."""
    no_namespace = _client(multi_user, "tok-alice")
    assert no_namespace.get_user_namespace() == ""  # nothing set and no in-cluster namespace file

    error = api_error(no_namespace.list_runs)
    assert error.status == 400
    body = error_body(error)
    assert body["message"] == (
        "Failed to list runs: Failed to list runs due to authorization error. Check if you have permission to "
        "access namespace : Invalid input error: A run cannot have an empty namespace in multi-user mode"
    )
    assert body["details"][0]["message"] == "A run cannot have an empty namespace in multi-user mode"

    error = api_error(no_namespace.list_experiments)
    assert error.status == 400
    assert error_body(error)["message"] == (
        "List experiments failed: Failed to authorize with API: Invalid input error: "
        "An experiment cannot have an empty namespace in multi-user mode"
    )
    error = api_error(no_namespace.experiments.experiment_service_create_experiment, {"display_name": unique("k9")})
    assert error.status == 400
    assert error_body(error)["message"] == (
        "Failed to create a experiment: Failed to authorize the request: Invalid input error: "
        "An experiment cannot have an empty namespace in multi-user mode"
    )
    # Validation comes before authentication: no credentials at all still gets the 400.
    assert api_error(_client(multi_user).list_experiments).status == 400

    team_a = _client(multi_user, "tok-alice", namespace="team-a")
    name = unique("k9-exp")
    result = team_a.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("k9"), experiment_name=name)
    experiment = team_a.get_experiment(experiment_name=name)
    assert experiment.namespace == "team-a"
    assert wait_for_state(team_a, result.run_id).state == "SUCCEEDED"
    assert result.run_id in {r.run_id for r in team_a.list_runs(page_size=200).runs}
    assert [r.run_id for r in team_a.list_runs(experiment_id=experiment.experiment_id).runs] == [result.run_id]

    spec = compiled_spec(pipelines.add_and_double)
    error = api_error(team_a.runs.run_service_create_run, {"display_name": "no-experiment", "pipeline_spec": spec})
    assert error.status == 400
    assert error_body(error)["details"][0]["message"] == "Experiment id can not be empty in multi-user mode"

    carol = _client(multi_user, "tok-carol", namespace="team-b")
    assert carol.list_runs(page_size=200).runs is None  # team-b sees none of team-a's runs
    assert api_error(carol.get_run, result.run_id).status == 403
    denied = api_error(carol.list_runs, experiment_id=experiment.experiment_id)
    assert denied.status == 403 and "namespace team-a" in denied.body


# ----- K10 --------------------------------------------------------------------------------------


def test_k10_like_wildcards_case_insensitive_and_second_resolution_sort(kfp_stand_in):
    """K10: predicates become SQL on MySQL (backend/src/apiserver/filter/filter.go ``AddToSelect``):
    IS_SUBSTRING is ``LIKE '%v%'`` with ``v`` unescaped, so ``_`` and ``%`` are wildcards; string
    comparison follows the column collation (case-insensitive). Sorting is ``ORDER BY <field>,
    <uuid>`` in one direction (backend/src/apiserver/list/list.go ``AddSortingToSelect``) over
    whole-second time columns (storage/run_store.go ``CreatedAtInSec``), so items created within a
    second come back in id order."""
    client = kfp_stand_in.client()
    tag = unique("k10")
    names = [f"{tag}-a_b", f"{tag}-aXb", f"{tag}-A%B", f"{tag}-ab"]
    for name in names:
        # Not client.create_experiment: it first looks the name up with a filter it does not encode,
        # which a '%' in the name turns into a 400 on a real server too (K1).
        client.experiments.experiment_service_create_experiment({"display_name": name})

    def names_for(flt: str) -> list[str]:
        found = client.list_experiments(filter=_encoded(flt), page_size=200).experiments or []
        return sorted(e.display_name for e in found)

    substring = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": f"{tag}-a_b"})
    assert names_for(substring) == sorted([f"{tag}-a_b", f"{tag}-aXb", f"{tag}-A%B"])  # '_' = any one char
    percent = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": f"{tag}-a%b"})
    assert names_for(percent) == sorted(names)  # '%' = any run of chars, even none
    escaped = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": f"{tag}-a\\_b"})
    assert names_for(escaped) == [f"{tag}-a_b"]  # LIKE's own escape character still works
    upper = _filter({"operation": "EQUALS", "key": "display_name", "string_value": f"{tag}-AXB".upper()})
    assert names_for(upper) == [f"{tag}-aXb"]
    in_list = _filter({"operation": "IN", "key": "display_name", "string_values": {"values": [f"{tag}-AB".upper()]}})
    assert names_for(in_list) == [f"{tag}-ab"]
    non_string = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "int_value": 3})
    assert api_error(client.list_experiments, filter=_encoded(non_string)).status == 400

    # Several experiments created within one second: the sort falls back to the id, both ways.
    burst = unique("k10-burst")
    for i in range(6):
        client.create_experiment(f"{burst}-{i}")
    listed_filter = _encoded(_filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": burst}))
    for direction in ("asc", "desc"):
        listed = client.list_experiments(filter=listed_filter, sort_by=f"created_at {direction}", page_size=50).experiments
        keys = [(int(e.created_at.timestamp()), e.experiment_id) for e in listed]
        assert keys == sorted(keys, reverse=direction == "desc"), keys
        assert len(keys) == 6
    seconds = [int(e.created_at.timestamp()) for e in listed]
    assert len(set(seconds)) < len(seconds), "expected at least two experiments within one second"
