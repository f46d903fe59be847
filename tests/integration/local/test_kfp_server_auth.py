"""Single-user ``--token-file`` authentication of the KFP stand-in, through the real kfp.Client (contracts.md A.2).

A single-user KFP authenticates nothing (fidelity K8); ``--token-file`` is a test aid standing for
an authenticating proxy, and it accepts only the file's current token, which is harder than a
cluster. KFP's own multi-user rules (401/403, a rotated token valid until it expires) are in
test_kfp_fidelity_api.py (``--multi-user``).
"""

from __future__ import annotations

import kfp
import kfp_server_api
import pytest

pytestmark = pytest.mark.integration


def test_existing_token_client_works(kfp_stand_in):
    client = kfp_stand_in.client()
    assert client.get_kfp_healthz().multi_user is False
    # By name, not from the first page: other tests on the shared stand-in add experiments.
    assert client.get_experiment(experiment_name="Default").display_name == "Default"


def test_service_account_token_file_is_reread_on_every_call(kfp_stand_in, tmp_path):
    token_path = tmp_path / "sa-token"
    token_path.write_text(kfp_stand_in.token + "\n")
    client = kfp.Client(
        host=kfp_stand_in.host, credentials=kfp.client.ServiceAccountTokenVolumeCredentials(path=str(token_path))
    )
    client.list_experiments()
    original = kfp_stand_in.token
    try:
        kfp_stand_in.rotate_token("rotated-token-2")
        token_path.write_text("rotated-token-2")
        # The same client picks up the rewritten file on its next request.
        assert client.list_experiments().total_size >= 1
    finally:
        kfp_stand_in.rotate_token(original)


def test_wrong_or_missing_token_is_401_with_the_error_body(kfp_stand_in):
    wrong = kfp.Client(host=kfp_stand_in.host, namespace="team-a", existing_token="not-the-token")
    with pytest.raises(kfp_server_api.ApiException) as info:
        wrong.list_experiments()
    assert info.value.status == 401
    assert b"bearer token is not valid" in info.value.body.encode() if isinstance(info.value.body, str) else info.value.body

    with kfp_stand_in.http() as http:
        http.headers.pop("authorization")
        response = http.get("/apis/v2beta1/runs")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 16 and "authorization: Bearer" in body["message"]
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.Status"


def test_admin_paths_need_the_token_too(kfp_stand_in):
    with kfp_stand_in.http() as http:
        http.headers["authorization"] = "Bearer nope"
        assert http.get("/_admin/stats").status_code == 401


def test_old_token_stops_working_after_rotation(kfp_stand_in):
    """Stand-in-only and deliberately harder than a cluster (where the old projected token stays valid
    until it expires, see test_k8 in test_kfp_fidelity_api.py): it proves a client re-reads the file."""
    stale = kfp_stand_in.client()
    original = kfp_stand_in.token
    try:
        kfp_stand_in.rotate_token("rotated-token-3")
        with pytest.raises(kfp_server_api.ApiException) as info:
            stale.list_runs()
        assert info.value.status == 401
        assert kfp_stand_in.client().list_runs() is not None
    finally:
        kfp_stand_in.rotate_token(original)
