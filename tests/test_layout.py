"""The test tree stays collectable: pytest imports test modules by basename (rootdir-relative, no
packages below tests/), so two files with one name in different folders break the whole run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_names_are_unique():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
