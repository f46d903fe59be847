"""Experiments, pipelines and versions on the KFP stand-in, and how it answers bad input (A.4, A.8)."""

from __future__ import annotations

import concurrent.futures
import json
import threading

import kfp_server_api
import pytest
import yaml
from kfp import compiler

from tests.fixtures import kfp_pipelines as pipelines
from tests.integration.local.kfp_helpers import unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(kfp_stand_in):
    return kfp_stand_in.client()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "add.yaml"
    compiler.Compiler().compile(pipelines.add_and_double, str(path))
    return path


def _api_error(call, *args, **kwargs) -> kfp_server_api.ApiException:
    with pytest.raises(kfp_server_api.ApiException) as info:
        call(*args, **kwargs)
    return info.value


def test_experiment_lifecycle(client):
    name = unique("exp")
    created = client.create_experiment(name, description="about")
    assert created.display_name == name and created.storage_state == "AVAILABLE"
    assert client.get_experiment(experiment_name=name).experiment_id == created.experiment_id
    assert client.create_experiment(name).experiment_id == created.experiment_id  # the SDK reuses by name
    names = {e.display_name for e in client.list_experiments(page_size=200).experiments}
    assert {"Default", name} <= names
    client.archive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "ARCHIVED"
    client.unarchive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "AVAILABLE"
    client.delete_experiment(created.experiment_id)
    assert _api_error(client.get_experiment, experiment_id=created.experiment_id).status == 404


def test_duplicate_names_are_409(client, package):
    name = unique("dup")
    client.create_experiment(name)
    error = _api_error(client.experiments.experiment_service_create_experiment, {"display_name": name})
    assert error.status == 409 and f"an experiment named {name!r} already exists" in error.body

    pipeline = client.upload_pipeline(str(package), pipeline_name=name)
    error = _api_error(client.upload_pipeline, str(package), pipeline_name=name)
    assert error.status == 409 and "already exists" in error.body
    error = _api_error(client.upload_pipeline_version, str(package), pipeline_version_name=name,
                       pipeline_id=pipeline.pipeline_id)
    assert error.status == 409 and f"already has a version named {name!r}" in error.body


def test_conflicting_creates_never_hide_existing_resources_from_readers(client, package):
    """Tasks racing to create one experiment get 409s; meanwhile every read of an existing pipeline
    must still answer 200 (a rolled-back 409 once emptied the stand-in's index for a moment)."""
    existing = client.upload_pipeline(str(package), pipeline_name=unique("seen"))
    stop = threading.Event()
    misses: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                client.get_pipeline(existing.pipeline_id)
            except kfp_server_api.ApiException as err:
                misses.append(f"{err.status} {err.body}")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(5):
            name = unique("race")
            with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
                outcomes = list(pool.map(_create_experiment_status, [client] * 6, [name] * 6))
            assert sorted(outcomes) == [200] + [409] * 5, outcomes
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not misses, misses[:3]


def _create_experiment_status(client, name: str) -> int:
    try:
        client.experiments.experiment_service_create_experiment({"display_name": name})
    except kfp_server_api.ApiException as err:
        return err.status
    return 200


def test_json_create_endpoints_names_lookup_and_delete(client, kfp_stand_in, package):
    spec = yaml.safe_load(package.read_text())
    name = unique("json-pipe")
    with kfp_stand_in.http() as http:
        created = http.post("/apis/v2beta1/pipelines/create", json={
            "pipeline": {"display_name": name}, "pipeline_version": {"display_name": "v1", "pipeline_spec": spec}})
        assert created.status_code == 200, created.text
        pipeline_id = created.json()["pipeline_id"]
        by_url = http.post(f"/apis/v2beta1/pipelines/{pipeline_id}/versions", json={
            "display_name": "v-url", "package_url": {"pipeline_url": package.as_uri()}})
        assert by_url.status_code == 200, by_url.text
        assert by_url.json()["pipeline_spec"]["pipelineInfo"]["name"] == "add-and-double"
        bare = http.post("/apis/v2beta1/pipelines", json={"display_name": unique("bare")})
        assert bare.status_code == 200 and bare.json()["display_name"].startswith("bare-")
        by_name = http.get(f"/apis/v2beta1/pipelines/names/{name}")
        assert by_name.status_code == 200 and by_name.json()["pipeline_id"] == pipeline_id

    versions = client.list_pipeline_versions(pipeline_id)
    assert sorted(v.display_name for v in versions.pipeline_versions) == ["v-url", "v1"]
    version_id = versions.pipeline_versions[0].pipeline_version_id
    assert client.get_pipeline_version(pipeline_id, version_id).pipeline_version_id == version_id

    error = _api_error(client.delete_pipeline, pipeline_id)  # the real server wants cascade with versions
    assert error.status == 400 and "cascade=true" in error.body
    for version in versions.pipeline_versions:
        client.delete_pipeline_version(pipeline_id, version.pipeline_version_id)
    client.delete_pipeline(pipeline_id)
    assert _api_error(client.get_pipeline, pipeline_id).status == 404


def test_upload_of_something_that_is_not_a_pipeline_is_400(client, tmp_path):
    not_a_pipeline = tmp_path / "config.yaml"
    not_a_pipeline.write_text("apiVersion: v1\nkind: ConfigMap\n")
    error = _api_error(client.upload_pipeline, str(not_a_pipeline), pipeline_name=unique("bad"))
    assert error.status == 400
    body = json.loads(error.body)
    assert "is not a KFP pipeline spec: missing 'pipelineInfo', 'root'" in body["error_message"]

    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    error = _api_error(client.upload_pipeline, str(broken), pipeline_name=unique("bad"))
    assert error.status == 400 and "is not valid YAML" in error.body


def test_unknown_ids_are_404(client):
    for call, args in [
        (client.get_run, ("no-such-run",)),
        (client.get_experiment, ()),
        (client.get_pipeline, ("no-such-pipeline",)),
        (client.get_pipeline_version, ("no-such-pipeline", "no-such-version")),
        (client.archive_run, ("no-such-run",)),
    ]:
        kwargs = {"experiment_id": "no-such-experiment"} if call == client.get_experiment else {}
        error = _api_error(call, *args, **kwargs)
        assert error.status == 404, call
        assert "not found" in json.loads(error.body)["message"]


def test_malformed_filter_and_sort_are_400(client):
    error = _api_error(client.list_runs, filter='{"predicates": [{"operation": "EQUALS", "key": "colour", "string_value": "x"}]}')
    assert error.status == 400 and "filter key 'colour' is not supported for runs" in error.body
    error = _api_error(client.list_experiments, filter="{broken")
    assert error.status == 400 and "filter is not valid JSON" in error.body
    error = _api_error(client.list_pipelines, sort_by="created_at upwards")
    assert error.status == 400 and "invalid sort by format" in error.body
    error = _api_error(client.list_runs, page_token="bm90LWEtdG9rZW4=")
    assert error.status == 400 and "page_token" in error.body


def test_bad_run_requests_are_400_before_anything_runs(client, package):
    error = _api_error(client.create_run_from_pipeline_package, str(package), arguments={"lr": 0.1}, run_name="x")
    assert error.status == 400 and "has no parameter(s) ['lr']" in error.body
    error = _api_error(client.runs.run_service_create_run, {"display_name": "no-source"})
    assert error.status == 400 and "exactly one of 'pipeline_spec' or 'pipeline_version_reference'" in error.body
    error = _api_error(client.runs.run_service_create_run,
                       {"display_name": "junk", "pipeline_spec": {"kind": "ConfigMap"}})
    assert error.status == 400 and "missing 'pipelineInfo'" in error.body


def test_body_less_posts_with_json_content_type_are_accepted(kfp_stand_in):
    experiment = kfp_stand_in.client().create_experiment(unique("bodyless"))
    with kfp_stand_in.http() as http:
        response = http.post(f"/apis/v2beta1/experiments/{experiment.experiment_id}:archive",
                             headers={"content-type": "application/json"})
        assert response.status_code == 200 and response.json() == {}
        response = http.post(f"/apis/v2beta1/experiments/{experiment.experiment_id}:unarchive",
                             headers={"content-type": "application/json", "content-length": "0"}, content=b"")
        assert response.status_code == 200
