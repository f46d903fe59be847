"""Roll out each model ``kfp_train`` publishes: scheduled on the asset ``kfp://iris-train/model``.

A run is created by the training's asset event, not by a clock that hopes training finished, and
rolls out exactly the model URI that event carries (behind a 20% canary, smoke-tested, then
promoted; any failure rolls back). Started by hand (Trigger form, REST API, CLI) it rolls out the
``model_uri`` param when given, else the asset's latest model.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param

from kfp_bridge.operators.kserve import KServeRolloutOperator

IRIS_MODEL = Asset("kfp://iris-train/model")  # what kfp_train's KfpRunOperator lists in outlets


def model_to_serve(params: Any, triggering_asset_events: Any, inlet_events: Any) -> str:
    """The model this run rolls out: the ``model_uri`` param, the triggering event's, else the latest event's."""
    if params.get("model_uri"):
        return params["model_uri"]
    # An asset-triggered run: its own event (the newest, if events arrived together), never a later one.
    events = list(triggering_asset_events.get(IRIS_MODEL) or ()) or list(inlet_events[IRIS_MODEL])
    events = [event for event in events if (event.extra or {}).get("model_uri")]
    if not events:
        raise ValueError(
            f"no model to roll out: this run was not started by an event of {IRIS_MODEL.uri} and the asset has "
            "no event with a model_uri yet. Run kfp_train first, or trigger with conf "
            '{"model_uri": "file:///path/to/model/dir"}'
        )
    return max(events, key=lambda event: event.timestamp).extra["model_uri"]


with DAG(
    dag_id="kfp_serve",
    schedule=[IRIS_MODEL],
    start_date=pendulum.datetime(2026, 11, 1, tz="Europe/Amsterdam"),
    catchup=False,
    tags=["kserve", "example"],
    params={
        "inference_service": Param("iris", type="string", description="the InferenceService to update"),
        "model_uri": Param(
            None,
            type=["null", "string"],
            description="roll out this model instead of the asset event's (file:///..., s3://..., gs://...)",
        ),
    },
    user_defined_macros={"model_to_serve": model_to_serve},
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
) as dag:
    serve = KServeRolloutOperator(
        task_id="serve_iris",
        inference_service="{{ params.inference_service }}",
        namespace="default",
        storage_uri="{{ model_to_serve(params, triggering_asset_events, inlet_events) }}",
        inlets=[IRIS_MODEL],  # lets a run started by hand read the asset's latest event
        canary_traffic_percent=20,
        smoke_test={
            # A V1 predict on three iris rows, one per class: three integer class ids back.
            "payload": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]},
            "expected_shape": [3],
            "allowed_values": [0, 1, 2],
        },
        deferrable=True,
        timeout=pendulum.duration(minutes=15),
    )


if __name__ == "__main__":
    dag.test()
