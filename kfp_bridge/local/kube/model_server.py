"""One KServe model server process: a scikit-learn ``model.joblib`` behind ``kserve.ModelServer``.

Runs in ``.venv-kserve`` (kserve pins ``psutil<6``, Airflow needs ``>=6.1``), started by the
stand-in controller as ``<kserve python> -I model_server.py --model-name M --storage-uri U
--http-port P --failure-file F``. It must import nothing from ``kfp_bridge``: that package lives in
the other environment.

A load failure is written as JSON to ``--failure-file`` and the process exits with code 1, so the
controller can copy the message into ``status.modelStatus.lastFailureInfo`` the way KServe copies a
terminated container's message.
"""

from __future__ import annotations

import os
import sys

# Run as a script, Python puts this folder first on sys.path; its sibling modules must not shadow
# top-level names that kserve imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
from urllib.parse import unquote, urlparse  # noqa: E402

MODEL_FILE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def resolve_model_file(storage_uri: str) -> str:
    """Turn ``file://…``/a local path (a model file, or a folder holding exactly one) into a file path."""
    parsed = urlparse(storage_uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(
            f"storageUri scheme {parsed.scheme!r} is not supported by the local KServe stand-in "
            f"({storage_uri!r}); use file:///absolute/path or a local path to model.joblib or its folder"
        )
    path = unquote(parsed.path) if parsed.scheme == "file" else storage_uri
    if parsed.scheme == "file" and parsed.netloc:
        # file://relative/dir is a common typo for file:///abs/dir; say so instead of guessing.
        raise ValueError(f"storageUri {storage_uri!r} has a host part; write file:///{parsed.netloc}{path}")
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"storageUri {storage_uri!r}: {path} does not exist")
    preferred = os.path.join(path, "model.joblib")
    if os.path.isfile(preferred):
        return preferred
    candidates = sorted(f for f in os.listdir(path) if f.endswith(MODEL_FILE_SUFFIXES))
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"storageUri {storage_uri!r}: expected model.joblib (or exactly one *.joblib/*.pkl file) in "
            f"{path}, found {candidates or 'none'}"
        )
    return os.path.join(path, candidates[0])


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--storage-uri", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--failure-file", help="where to write {'reason','message'} if loading fails")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    # kserve parses sys.argv at import time; keep our flags away from its parser.
    sys.argv = sys.argv[:1]

    import joblib
    import kserve
    from kserve.errors import InferenceError
    from kserve.utils.utils import get_predict_input, get_predict_response

    class SKLearnModel(kserve.Model):
        """Mirrors kserve's sklearnserver: predict() on V1 ``instances`` or the first V2 input."""

        def __init__(self, name: str, storage_uri: str):
            super().__init__(name)
            self.storage_uri = storage_uri
            self._model = None

        def load(self) -> bool:
            self._model = joblib.load(resolve_model_file(self.storage_uri))
            if not hasattr(self._model, "predict"):
                raise TypeError(
                    f"{type(self._model).__name__} loaded from {self.storage_uri!r} has no predict()"
                )
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            try:
                result = self._model.predict(get_predict_input(payload))
                return get_predict_response(payload, result, self.name)
            except Exception as exc:  # kserve turns InferenceError into a 500 with the message
                raise InferenceError(str(exc)) from exc

    model = SKLearnModel(args.model_name, args.storage_uri)
    try:
        model.load()
    except Exception as exc:
        message = f"failed to load model from {args.storage_uri!r}: {type(exc).__name__}: {exc}"
        if args.failure_file:
            with open(args.failure_file, "w", encoding="utf-8") as fh:
                json.dump({"reason": "ModelLoadFailed", "message": message}, fh)
        print(message, file=sys.stderr, flush=True)
        return 1
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
