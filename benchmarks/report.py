"""What the scripts that write measured figures into docs/ share: the machine line and the section rewrite."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def machine_facts() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kib = 0
    return f"{os.cpu_count()} CPUs (nproc), {model}, {mem_kib / 2**20:.1f} GiB RAM, Python {sys.version.split()[0]}"


def write_section(doc: Path, name: str, body: str, *, preamble: str) -> None:
    """Replace section ``name`` of ``doc`` (between its markers), keeping the rest; ``preamble``
    starts the file when it does not exist yet."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else preamble
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text if text.endswith("\n") else text + "\n")
