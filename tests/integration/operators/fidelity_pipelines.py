# ruff: noqa: I002
"""Pipelines for the KFP 2.17 fidelity tests of KfpRunOperator (kfp cannot read components under
future annotations): a failing step inside a nested pipeline, one inside a ParallelFor iteration,
and a counted step for caching. Each step appends to ``counter_path`` when it really executes."""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def count(counter_path: str, label: str) -> str:
    with open(counter_path, "a") as counter:
        counter.write(label + "\n")
    return label


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def explode(counter_path: str, item: int, bad: int) -> int:
    with open(counter_path, "a") as counter:
        counter.write(f"explode {item}\n")
    if item == bad:
        raise RuntimeError(f"item {item} exploded on purpose")
    return item


@dsl.pipeline(name="bridge-inner")
def inner(counter_path: str, bad: int = 1):
    first = count(counter_path=counter_path, label="inner")
    explode(counter_path=counter_path, item=1, bad=bad).after(first)


@dsl.pipeline(name="bridge-nested")
def nested(counter_path: str, bad: int = 1):
    first = count(counter_path=counter_path, label="outer")
    inner(counter_path=counter_path, bad=bad).after(first)


@dsl.pipeline(name="bridge-loop")
def loop(counter_path: str, bad: int = 1):
    with dsl.ParallelFor([0, 1, 2]) as item:
        explode(counter_path=counter_path, item=item, bad=bad)


@dsl.pipeline(name="bridge-counted")
def counted(counter_path: str, label: str = "x"):
    first = count(counter_path=counter_path, label=label)
    count(counter_path=counter_path, label=first.output)


def compile_fidelity(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, func in {"nested": nested, "loop": loop, "counted": counted}.items():
        path = folder / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        out[name] = path
    return out
