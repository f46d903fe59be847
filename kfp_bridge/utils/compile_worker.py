"""``python -m kfp_bridge.utils.compile_worker REFERENCE OUT.yaml``: compile inside the kfp SDK's venv.

Run by :func:`kfp_bridge.utils.sdk.compile_in_subprocess` when the Airflow environment has no kfp.
Imports nothing from Airflow, so the SDK venv needs only kfp. Exit 2 with the message on stderr for
a source the user must fix.
"""

from __future__ import annotations

import sys

from kfp_bridge.utils.pipeline_sources import PipelineSourceError, compile_in_process, resolve_pipeline_source
from kfp_bridge.utils.sdk import EXIT_BAD_SOURCE


def main(argv: list[str]) -> int:
    reference, package_path = argv
    try:
        compile_in_process(resolve_pipeline_source(reference), package_path)
    except (PipelineSourceError, FileNotFoundError) as err:
        print(str(err).replace("\n", " "), file=sys.stderr)
        return EXIT_BAD_SOURCE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
