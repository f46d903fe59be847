"""Pipeline sources the tests of kfp_bridge.utils.pipeline_* compile with the real kfp compiler.

Sources are written to files because kfp cannot read the PEP 563 string annotations that the test
modules (like every module in the repo) have.
"""

from __future__ import annotations

import os
import textwrap

TYPED_PIPELINE = """
from typing import Optional
from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def echo(a: str, b: int, d: float, e: bool, f: list, g: dict, h: Optional[str] = None) -> str:
    return a


@dsl.pipeline(name="typed")
def typed(
    a: str,
    b: int = 3,
    d: float = DEFAULT_D,
    e: bool = True,
    f: list = [1, 2],
    g: dict = {"k": 1},
    h: Optional[str] = None,
):
    echo(a=a, b=b, d=d, e=e, f=f, g=g, h=h)
"""

NESTED_PIPELINE = """
from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def one() -> int:
    return 1


@dsl.pipeline(name="inner")
def inner():
    one()


@dsl.pipeline(name="outer")
def outer(items: list = [1, 2]):
    one()
    with dsl.ParallelFor(items):
        one()
    inner()
"""


def write(folder, name: str, source: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(source))
    return path


def typed_source(folder, default_d: str = "1.0", name: str = "typed.py") -> str:
    return write(folder, name, TYPED_PIPELINE.replace("DEFAULT_D", default_d))
