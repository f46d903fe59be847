# ruff: noqa: I002
"""A nested pipeline and a ParallelFor for the step-mapping tests (kfp cannot read components
under future annotations). The inner pipeline reuses the outer task name ``work``."""

from kfp import dsl


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def work(x: int) -> int:
    return x


@dsl.component(install_kfp_package=False, base_image="python:3.11")
def boom(x: int):
    raise RuntimeError(f"boom {x}")


@dsl.pipeline(name="inner")
def inner(x: int = 1):
    boom(x=work(x=x).output)


@dsl.pipeline(name="outer")
def outer(x: int = 1):
    prep = work(x=x)
    inner(x=prep.output)
    with dsl.ParallelFor([1, 2, 3]) as item:
        work(x=item)
