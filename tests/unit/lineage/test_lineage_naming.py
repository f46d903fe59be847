"""Dataset names of model URIs and InferenceServices (kfp_bridge.lineage.naming)."""

from __future__ import annotations

import pytest

from kfp_bridge.lineage.naming import (
    DatasetName,
    api_server_authority,
    inference_service_dataset_name,
    model_dataset_name,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/models/iris", DatasetName("file", "/models/iris")),
        ("/models/iris/", DatasetName("file", "/models/iris")),
        ("file:///models/iris", DatasetName("file", "/models/iris")),
        ("file:///models/iris//", DatasetName("file", "/models/iris")),
        ("s3://bucket/models/iris/", DatasetName("s3://bucket", "models/iris")),
        ("gs://bucket/iris", DatasetName("gs://bucket", "iris")),
        ("gs://bucket", DatasetName("gs://bucket", "/")),
        ("pvc://claim/iris", DatasetName("pvc://claim", "iris")),
        ("https://host:8443/m/iris", DatasetName("https://host:8443", "m/iris")),
    ],
)
def test_model_uri_names(uri: str, expected: DatasetName) -> None:
    assert model_dataset_name(uri) == expected


def test_the_training_output_and_the_rollout_input_are_one_dataset_however_spelled() -> None:
    # KfpRunOperator(model_uri="file:///m/iris/") and KServeRolloutOperator(storage_uri="/m/iris").
    assert model_dataset_name("file:///m/iris/") == model_dataset_name("/m/iris")


@pytest.mark.parametrize("uri", [None, "", "  ", "models/iris", "s3:///key", 42])
def test_no_dataset_for_what_names_no_location(uri: object) -> None:
    assert model_dataset_name(uri) is None  # type: ignore[arg-type]


def test_inference_service_is_named_by_cluster_namespace_and_name() -> None:
    assert inference_service_dataset_name("10.0.0.1:443", "ml", "iris") == DatasetName("kserve://10.0.0.1:443", "ml/iris")
    assert api_server_authority("https://10.0.0.1:443") == "10.0.0.1:443"
    assert api_server_authority("kube.example.com:6443") == "kube.example.com:6443"
    assert api_server_authority(None) is None
