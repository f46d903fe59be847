# ruff: noqa: I002
"""Small, fast pipelines for operator tests (kfp cannot read components under future annotations).

* ``two_step``: ``prepare`` appends a line to ``counter_path`` (a side-effect counter), then
  ``check_flag`` fails while ``flag_path`` exists, with an error that names the file.
* ``sleeper``: one step that sleeps ``seconds`` (cancel, crash and rotation tests).
"""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def prepare(counter_path: str, label: str) -> str:
    with open(counter_path, "a") as counter:
        counter.write(label + "\n")
    return label


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def check_flag(flag_path: str, upstream: str) -> str:
    import os

    if os.path.exists(flag_path):
        raise RuntimeError(f"flag file {flag_path} is present; remove it to let this step pass")
    return upstream + " checked"


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def sleep_for(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="bridge-two-step")
def two_step(counter_path: str, flag_path: str, label: str = "x"):
    first = prepare(counter_path=counter_path, label=label)
    check_flag(flag_path=flag_path, upstream=first.output)


@dsl.pipeline(name="bridge-sleeper")
def sleeper(seconds: float = 30.0):
    sleep_for(seconds=seconds)


def compile_all(folder: Path) -> dict[str, Path]:
    """Compile every pipeline here into ``folder``; returns name -> YAML path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, func in {"two_step": two_step, "sleeper": sleeper}.items():
        path = folder / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        out[name] = path
    return out
