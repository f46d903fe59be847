# ruff: noqa: I002
"""The system tests' pipeline, written as the KFP documentation writes one: default
``@dsl.component`` (kfp installed at step start), a nested pipeline, a loop, an output passed on.
It runs unchanged on a real KFP 2.x cluster and on the embedded stand-in (kfp cannot read
components under future annotations)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def greet(name: str) -> str:
    message = f"hello {name}"
    print(message)
    return message


@dsl.component(base_image="python:3.11")
def shout(message: str, suffix: str) -> str:
    return f"{message.upper()} {suffix}"


@dsl.pipeline(name="kfp-bridge-system-inner")
def inner(message: str):
    shout(message=message, suffix="from the nested pipeline")


@dsl.pipeline(name="kfp-bridge-system-example", description="kfp-bridge system test pipeline")
def example_pipeline(name: str = "world"):
    hello = greet(name=name)
    inner(message=hello.output)
    with dsl.ParallelFor(["one", "two"]) as suffix:
        shout(message=hello.output, suffix=suffix)
