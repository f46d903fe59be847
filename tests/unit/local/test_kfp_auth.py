"""Multi-user identities of the KFP stand-in (fidelity K8): authenticators, SubjectAccessReview, expiry.

Upstream: backend/src/apiserver/auth/*.go (identity from ``kubeflow-userid`` or a reviewed bearer
token), resource_manager.go ``IsAuthorized`` (401 / 403 and their messages).
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from kfp_bridge.local.kfp.auth import Access, Caller, MultiUser, UsersFileError, jwt_expiry
from kfp_bridge.local.kfp.wire import ApiError


def _jwt(exp: int) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "x", "exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.sig"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _policy(tmp_path, token: str | None = None, clock: Clock | None = None, **extra) -> MultiUser:
    users = {"namespaces": {"alice": ["team-a"], "sa": ["team-a"], "root": ["*"]},
             "tokens": {"tok-alice": "alice", "tok-old": {"user": "alice", "expires_at": "2020-01-01T00:00:00Z"}},
             "token_file_user": "sa", **extra}
    (tmp_path / "users.yaml").write_text(json.dumps(users))
    token_file = None
    if token is not None:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
    return MultiUser.from_file(tmp_path / "users.yaml", token_file, clock=clock or time.time)


def _bearer(token: str) -> Caller:
    return Caller(authorization=(f"Bearer {token}",))


def test_identity_from_the_userid_header_or_a_bearer_token(tmp_path):
    policy = _policy(tmp_path)
    assert policy.identify(Caller(userid=("alice",)))[0] == "alice"
    assert policy.identify(_bearer("tok-alice"))[0] == "alice"
    assert policy.identify(_bearer("tok-old"))[0] == ""  # expired in 2020
    user, errors = policy.identify(Caller(authorization=("Basic abc",)))
    assert user == "" and "Header 'Authorization' is incorrectly formatted. Expected prefix 'Bearer '" in errors[1]


def test_no_identity_is_401_and_a_denial_403_with_the_upstream_messages(tmp_path):
    policy = _policy(tmp_path)
    with pytest.raises(ApiError) as info:
        policy.authorize(Access("team-a", "list", "runs"), Caller())
    assert info.value.http_status == 401
    assert info.value.external == "Failed to check authorization. User identity is empty in the request header"
    with pytest.raises(ApiError) as info:
        policy.authorize(Access("team-b", "get", "runs", "wf"), _bearer("tok-alice"))
    assert info.value.http_status == 403
    assert info.value.message == (
        "PermissionDenied: User 'alice' is not authorized with reason:  (request: &ResourceAttributes{Namespace:team-b,"
        "Verb:get,Group:pipelines.kubeflow.org,Version:v1beta1,Resource:runs,Subresource:,Name:wf,"
        "FieldSelector:nil,LabelSelector:nil,}): Unauthorized access"
    )
    policy.authorize(Access("team-a", "get", "runs"), _bearer("tok-alice"))
    policy.authorize(Access("anything", "delete", "pipelines"), Caller(userid=("root",)))


def test_a_rotated_token_stays_valid_until_its_expiry(tmp_path):
    clock = Clock(1000.0)
    first, second = _jwt(1100), _jwt(5000)
    policy = _policy(tmp_path, token=first, clock=clock)
    assert policy.identify(_bearer(first))[0] == "sa"
    (tmp_path / "token").write_text(second)
    assert policy.identify(_bearer(second))[0] == "sa"
    assert policy.identify(_bearer(first))[0] == "sa"  # rotated out, not expired
    clock.now = 1100.0
    assert policy.identify(_bearer(first))[0] == ""
    assert policy.identify(_bearer(second))[0] == "sa"


def test_an_opaque_token_from_the_file_lives_token_lifetime_seconds_after_rotation(tmp_path):
    clock = Clock(0.0)
    policy = _policy(tmp_path, token="opaque-1", clock=clock, token_lifetime_seconds=60)
    (tmp_path / "token").write_text("opaque-2")
    clock.now = 10.0
    assert policy.identify(_bearer("opaque-1"))[0] == "sa"  # the file was read at start: it was issued
    clock.now = 5000.0
    assert policy.identify(_bearer("opaque-1"))[0] == ""
    assert policy.identify(_bearer("opaque-2"))[0] == "sa"  # the current content never expires by lifetime


def test_jwt_expiry_reads_exp_only_from_jwt_shaped_tokens():
    assert jwt_expiry(_jwt(42)) == 42.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.b.c") is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "must be a mapping"),
        ('{"namespaces": {"alice": "team-a"}}', "must be a list of names"),
        ('{"tokens": {"t": {}}}', "token #1 needs {user: <identity>}"),
        ('{"colour": 1}', "unknown keys ['colour']"),
    ],
)
def test_a_bad_users_file_names_the_fix(tmp_path, content, fragment):
    (tmp_path / "users.yaml").write_text(content)
    with pytest.raises(UsersFileError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("{", r"\{")):
        MultiUser.from_file(tmp_path / "users.yaml")


def test_a_token_file_needs_its_identity(tmp_path):
    (tmp_path / "users.yaml").write_text("{}")
    (tmp_path / "token").write_text("t")
    with pytest.raises(UsersFileError, match="token_file_user"):
        MultiUser.from_file(tmp_path / "users.yaml", tmp_path / "token")


def test_the_cli_refuses_a_multi_user_server_without_a_usable_users_file(tmp_path, capsys):
    from kfp_bridge.cli import main

    state = str(tmp_path / "state")
    assert main(["local", "kfp", "--port", "1", "--state-dir", state, "--multi-user"]) == 2
    assert "--multi-user needs --users FILE" in capsys.readouterr().err
    (tmp_path / "users.yaml").write_text("namespaces: [unclosed\n")
    assert main(["local", "kfp", "--port", "1", "--state-dir", state, "--multi-user", "--users",
                 str(tmp_path / "users.yaml")]) == 2
    assert "is not valid YAML/JSON" in capsys.readouterr().err
    assert main(["local", "kfp", "--port", "1", "--state-dir", state, "--users", str(tmp_path / "users.yaml")]) == 2
    assert "--users only applies with --multi-user" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before anything was created
