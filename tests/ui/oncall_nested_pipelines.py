# ruff: noqa: I002
"""Pipelines for the on-call test of failing steps inside a nested pipeline and a ParallelFor
iteration (kfp cannot read components under future annotations). Every step appends a line to
``counter_path`` when it really executes; ``fail_if_flag`` raises for ``item == bad`` while
``flag_path`` exists, so removing the file and retrying lets the same step pass."""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def record(counter_path: str, label: str) -> str:
    with open(counter_path, "a") as counter:
        counter.write(label + "\n")
    return label


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def fail_if_flag(counter_path: str, flag_path: str, label: str, item: int, bad: int) -> int:
    import os

    with open(counter_path, "a") as counter:
        counter.write(f"{label} {item}\n")
    if item == bad and os.path.exists(flag_path):
        raise RuntimeError(f"{label} item {item} broke on purpose while {flag_path} exists")
    return item


@dsl.pipeline(name="bridge-oncall-inner")
def inner(counter_path: str, flag_path: str):
    first = record(counter_path=counter_path, label="inner")
    fail_if_flag(counter_path=counter_path, flag_path=flag_path, label="nested", item=1, bad=1).after(first)


@dsl.pipeline(name="bridge-oncall-nested")
def nested(counter_path: str, flag_path: str):
    first = record(counter_path=counter_path, label="outer")
    inner(counter_path=counter_path, flag_path=flag_path).after(first)


@dsl.pipeline(name="bridge-oncall-loop")
def loop(counter_path: str, flag_path: str):
    with dsl.ParallelFor([0, 1, 2]) as item:
        fail_if_flag(counter_path=counter_path, flag_path=flag_path, label="loop", item=item, bad=1)


def compile_oncall_nested(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, func in {"nested": nested, "loop": loop}.items():
        path = folder / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        out[name] = path
    return out
