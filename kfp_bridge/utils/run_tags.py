"""The deterministic tag that ties a KFP run to the Airflow task instance that created it.

It goes into the run's description, so the run can be found again with a filtered ListRuns
(``description EQUALS tag``, a filter the real API supports) even when the worker died between
creating the run and saving its id.
"""

from __future__ import annotations

TAG_PREFIX = "airflow-task"


def run_tag(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    index = -1 if map_index is None else map_index
    return f"{TAG_PREFIX}:dag_id={dag_id}/task_id={task_id}/run_id={run_id}/map_index={index}"


def parse_run_tag(text: str | None) -> dict[str, str] | None:
    """The parts of a tag, or None when ``text`` is not one of ours."""
    if not text or not text.startswith(f"{TAG_PREFIX}:"):
        return None
    parts: dict[str, str] = {}
    body = text[len(TAG_PREFIX) + 1 :]
    # run ids may contain "/" (manual__2026-01-01T00:00:00+00:00 does not, but users can): split on the keys.
    keys = ["dag_id", "task_id", "run_id", "map_index"]
    for index, key in enumerate(keys):
        start = body.find(f"{key}=")
        if start < 0:
            return None
        value_start = start + len(key) + 1
        end = body.find(f"/{keys[index + 1]}=", value_start) if index + 1 < len(keys) else len(body)
        parts[key] = body[value_start:end]
    return parts
