"""Model server plumbing of the kube stand-in that runs without starting a server."""

from __future__ import annotations

import pytest

from kfp_bridge.local.kube.controller import predictor_template, storage_uri_of
from kfp_bridge.local.kube.model_server import resolve_model_file
from kfp_bridge.local.kube.processes import KSERVE_PYTHON_ENV, KServeEnvironmentMissing, kserve_python


def test_missing_kserve_python_names_make_venv_kserve(monkeypatch, tmp_path):
    monkeypatch.setenv(KSERVE_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(KServeEnvironmentMissing) as err:
        kserve_python()
    assert "make venv-kserve" in str(err.value) and KSERVE_PYTHON_ENV in str(err.value)


def test_resolve_model_file_accepts_uri_folder_and_file(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"x")
    assert resolve_model_file(f"file://{tmp_path}") == str(tmp_path / "model.joblib")
    assert resolve_model_file(str(tmp_path)) == str(tmp_path / "model.joblib")
    assert resolve_model_file(str(tmp_path / "model.joblib")) == str(tmp_path / "model.joblib")
    other = tmp_path / "other"
    other.mkdir()
    (other / "clf.pkl").write_bytes(b"x")
    assert resolve_model_file(str(other)) == str(other / "clf.pkl")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/model", "use file:///absolute/path"),
        ("file://relative/dir", "has a host part"),
        ("/definitely/not/here", "does not exist"),
    ],
)
def test_resolve_model_file_errors_say_what_to_do(uri, message):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        resolve_model_file(uri)
    assert message in str(err.value)


def test_storage_uri_of_new_and_old_predictor_shapes():
    assert storage_uri_of({"model": {"modelFormat": {"name": "SKLearn"}, "storageUri": "file:///m"}}) == (
        "file:///m",
        "",
    )
    assert storage_uri_of({"sklearn": {"storageUri": "/m"}}) == ("/m", "")
    uri, problem = storage_uri_of({"model": {"modelFormat": {"name": "xgboost"}, "storageUri": "/m"}})
    assert uri is None and "sklearn" in problem
    assert storage_uri_of({})[0] is None


def test_canary_percentage_is_not_part_of_the_revision_template():
    spec = {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "a"}}}
    assert predictor_template(spec) == {"model": {"storageUri": "a"}}
    assert spec["predictor"]["canaryTrafficPercent"] == 10
