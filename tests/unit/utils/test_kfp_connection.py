from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from kfp_bridge.get_provider_info import get_provider_info
from kfp_bridge.utils.kfp_connection import (
    CONN_FIELDS,
    DEFAULT_TOKEN_PATH,
    UI_FIELD_BEHAVIOUR,
    KfpConnectionError,
    TokenSource,
    settings_from_connection,
)


def conn(host="http://127.0.0.1:8888", password=None, extra=None, schema=None, port=None, conn_id="kfp_default"):
    return SimpleNamespace(conn_id=conn_id, host=host, password=password, extra=json.dumps(extra or {}),
                           schema=schema, port=port)


def test_static_token_wins(tmp_path):
    settings = settings_from_connection(conn(password="s3cret", extra={"token_path": str(tmp_path / "t")}))
    assert settings.token.read() == "s3cret"
    assert "s3cret" not in settings.token.kind


def test_token_file_from_env_is_reread(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-A\n")
    settings = settings_from_connection(conn(), environ={"KF_PIPELINES_SA_TOKEN_PATH": str(token)})
    assert settings.token.read() == "tok-A"
    token.write_text("tok-B")
    assert settings.token.read() == "tok-B"


def test_extra_token_path_beats_env(tmp_path):
    settings = settings_from_connection(
        conn(extra={"token_path": "/x/token"}), environ={"KF_PIPELINES_SA_TOKEN_PATH": "/y/token"}
    )
    assert settings.token.token_path == "/x/token"


def test_no_token_source_without_file(tmp_path):
    settings = settings_from_connection(conn(), environ={})
    # The default path exists only inside a pod with the PodDefault.
    assert settings.token.token_path in (None, DEFAULT_TOKEN_PATH)


def test_missing_token_file_names_the_fix(tmp_path):
    source = TokenSource(token_path=str(tmp_path / "absent"))
    with pytest.raises(KfpConnectionError, match="token_path"):
        source.read()


@pytest.mark.parametrize("host", ["", "ftp://x", "not a url", "http://:80", "http://h:notaport"])
def test_malformed_host_is_rejected(host):
    with pytest.raises(KfpConnectionError, match="(KFP API URL|not an http|invalid port)"):
        settings_from_connection(conn(host=host))


def test_uri_split_host_is_reassembled():
    settings = settings_from_connection(conn(host="kfp.example.com", schema="https", port=8443))
    assert settings.host == "https://kfp.example.com:8443"


def test_ui_host_and_flags():
    settings = settings_from_connection(
        conn(extra={"ui_host": "https://ui.example.com/", "verify_ssl": "false", "namespace": "team-a"})
    )
    assert settings.run_url("r1") == "https://ui.example.com/#/runs/details/r1"
    assert settings.verify_ssl is False
    assert settings.namespace == "team-a"


def test_missing_ca_cert_is_rejected(tmp_path):
    with pytest.raises(KfpConnectionError, match="ca_cert"):
        settings_from_connection(conn(extra={"ca_cert": str(tmp_path / "ca.pem")}))


def test_provider_info_serves_the_connection_form():
    (kfp_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "kfp"]
    assert kfp_type["conn-fields"] == CONN_FIELDS
    assert kfp_type["ui-field-behaviour"] == UI_FIELD_BEHAVIOUR


def test_provider_info_imports_only_the_standard_library():
    # Airflow calls get_provider_info at every start-up (provider discovery): it must stay cheap.
    probe = (
        "import sys; before = set(sys.modules); import kfp_bridge.get_provider_info; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['kfp_bridge']", out


@pytest.mark.parametrize(("value", "expected"), [(None, False), (True, True), ("true", True), ("false", False)])
def test_multi_user_extra(value, expected):
    extra = {} if value is None else {"multi_user": value}
    assert settings_from_connection(conn(extra=extra), environ={}).multi_user is expected


# ----- a bearer token over plain http (issue 13 item 2) ------------------------------------------------
@pytest.mark.parametrize(
    "host",
    [
        "http://kfp.example.com:8888",
        "http://203.0.113.7/pipeline",
        "http://[2001:db8::1]:80",
        "http://kfp.svc.evil.com",
        "http://10.0.0.5:8888",
        "http://[::ffff:203.0.113.7]:80",
    ],
)
def test_token_over_plain_http_to_public_host_is_refused(host):
    with pytest.raises(KfpConnectionError) as err:
        settings_from_connection(conn(host=host, password="s3cret-token"), environ={})
    message = str(err.value)
    assert "https" in message and "allow_insecure_token" in message
    assert "s3cret-token" not in message


def test_token_file_over_plain_http_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text("file-token-xyz")
    with pytest.raises(KfpConnectionError, match="token file") as err:
        settings_from_connection(conn(host="http://kfp.example.com", extra={"token_path": str(token)}), environ={})
    assert "file-token-xyz" not in str(err.value)


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:8888",
        "http://127.9.9.9",
        "http://[::1]:8888",
        "http://[::ffff:127.0.0.1]:8888",
        "http://0.0.0.0:8888",
        "http://localhost:8888",
        "http://ml-pipeline:8888",
        "http://ml-pipeline.kubeflow.svc:8888",
        "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
        "https://kfp.example.com",
    ],
)
def test_token_over_loopback_cluster_local_or_https_is_allowed(host):
    assert settings_from_connection(conn(host=host, password="t"), environ={}).token.read() == "t"


def test_no_token_over_plain_http_is_allowed():
    assert settings_from_connection(conn(host="http://kfp.example.com"), environ={}).token.kind == "no authentication"


@pytest.mark.parametrize("value", [True, "true", "True"])
def test_allow_insecure_token_is_deliberate(value):
    settings = settings_from_connection(
        conn(host="http://kfp.example.com", password="t", extra={"allow_insecure_token": value}), environ={}
    )
    assert settings.host == "http://kfp.example.com"


@pytest.mark.parametrize("value", ["yes please", 1.5])
def test_allow_insecure_token_must_be_a_boolean(value):
    with pytest.raises(KfpConnectionError, match="allow_insecure_token' must be true or false"):
        settings_from_connection(conn(host="http://kfp.example.com", password="t", extra={"allow_insecure_token": value}))


def test_allow_insecure_token_false_still_refuses():
    with pytest.raises(KfpConnectionError, match="plain http"):
        settings_from_connection(
            conn(host="http://kfp.example.com", password="t", extra={"allow_insecure_token": "false"}), environ={}
        )


def test_broken_extra_json_of_a_real_connection_is_an_error_not_an_empty_dict():
    from airflow.sdk import Connection

    broken = Connection(conn_id="kfp_broken", conn_type="kfp", host="http://127.0.0.1:8888", extra='{"namespace": ')
    with pytest.raises(KfpConnectionError, match="extra field is not valid JSON"):
        settings_from_connection(broken, environ={})


def test_extra_of_a_real_connection_is_read():
    from airflow.sdk import Connection

    good = Connection(conn_id="kfp_ok", conn_type="kfp", host="http://127.0.0.1:8888", extra='{"namespace": "team-a"}')
    assert settings_from_connection(good, environ={}).namespace == "team-a"
