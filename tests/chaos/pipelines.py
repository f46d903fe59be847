# ruff: noqa: I002
"""The one pipeline the chaos scenarios run (kfp cannot read components under future annotations).

``nap`` waits until ``gate_path`` exists (when given), sleeps ``seconds``, then fails when ``fail``
is true with an error that names the step. The gate lets a test hold 50 runs open until it has
done its damage; ``fail`` gives every scenario a run whose task must fail (no false successes).
"""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def nap_step(seconds: float, fail: bool, gate_path: str, gate_timeout: float) -> float:
    import os
    import time

    give_up = time.time() + gate_timeout
    while gate_path and not os.path.exists(gate_path):
        if time.time() > give_up:
            raise RuntimeError(f"gate file {gate_path} did not appear within {gate_timeout}s")
        time.sleep(0.5)
    time.sleep(seconds)
    if fail:
        raise RuntimeError("nap-step was asked to fail (fail=True)")
    return seconds


@dsl.pipeline(name="chaos-nap")
def nap(seconds: float = 1.0, fail: bool = False, gate_path: str = "", gate_timeout: float = 900.0):
    nap_step(seconds=seconds, fail=fail, gate_path=gate_path, gate_timeout=gate_timeout)


def compile_nap(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nap.yaml"
    compiler.Compiler().compile(nap, str(path))
    return path
