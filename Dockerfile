# syntax=docker/dockerfile:1
# Airflow 3.3 (official image, Python 3.11) with kfp-bridge installed at the versions and hashes in uv.lock.
#
#   docker build --build-arg AIRFLOW_IMAGE_DIGEST=sha256:... -t kfp-bridge-airflow .                      # the Airflow image
#   docker build --build-arg AIRFLOW_IMAGE_DIGEST=sha256:... --target standins -t kfp-bridge-standins .   # + the KServe venv
#
# The base image is pinned by digest, the tag beside it: AIRFLOW_IMAGE is the tag (it must match the
# apache-airflow version in uv.lock; tests/deploy checks it), AIRFLOW_IMAGE_DIGEST the exact image it
# resolved to when you reviewed it. The digest has no default on purpose: it was written where no
# registry could be asked, and a guessed digest is worse than none. Look it up once, keep it in .env
# (docker compose passes it and refuses to build without it):
#   docker buildx imagetools inspect apache/airflow:3.3.2-python3.11 --format '{{json .Manifest.Digest}}'
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG AIRFLOW_IMAGE_DIGEST
ARG UV_VERSION=0.13.9

# ---- requirements: every locked runtime version with its hashes, and the kfp-bridge wheel ---------------
FROM ${AIRFLOW_IMAGE}@${AIRFLOW_IMAGE_DIGEST} AS requirements
ARG UV_VERSION
USER airflow
# mkdir as the airflow user: a directory WORKDIR creates may belong to root.
RUN pip install --no-cache-dir "uv==${UV_VERSION}" && mkdir -p /tmp/kfp-bridge
WORKDIR /tmp/kfp-bridge
COPY --chown=airflow:0 pyproject.toml uv.lock README.md ./
COPY --chown=airflow:0 kfp_bridge ./kfp_bridge
# --frozen: read the lock file as committed, never re-resolve; hashes are kept (uv's default), so pip
# below checks every download against uv.lock. The wheel holds only this repository's code.
# The stand-ins image adds the `local` extra (the kfp SDK, whose pins uv.lock overrides).
RUN uv export --frozen --no-dev --no-emit-project --extra examples -o /tmp/kfp-bridge/requirements.txt \
    && uv export --frozen --no-dev --no-emit-project --extra examples --extra local \
        -o /tmp/kfp-bridge/requirements-standins.txt \
    && uv build --wheel --out-dir /tmp/kfp-bridge/dist

# ---- the Airflow image ----------------------------------------------------------------------------------
FROM ${AIRFLOW_IMAGE}@${AIRFLOW_IMAGE_DIGEST} AS airflow
COPY --from=requirements --chown=airflow:0 /tmp/kfp-bridge/requirements.txt /opt/kfp-bridge/requirements.txt
COPY --from=requirements --chown=airflow:0 /tmp/kfp-bridge/dist/ /opt/kfp-bridge/dist/
USER airflow
# --require-hashes: pip installs nothing whose hash uv.lock does not list; --no-deps: the export is the
# whole locked closure, pip installs exactly it and resolves nothing. The locked apache-airflow is the
# image's own version (tests/deploy), so pip keeps the Airflow the image ships. The `examples` extra
# (scikit-learn, joblib) is what the example pipeline's components import when the KFP stand-in runs
# them. kfp-bridge itself is the wheel built above from this checkout.
RUN pip install --no-cache-dir --no-deps --require-hashes -r /opt/kfp-bridge/requirements.txt \
    && pip install --no-cache-dir --no-deps /opt/kfp-bridge/dist/*.whl \
    && kfp-bridge --help > /dev/null \
    && mkdir -p /opt/airflow/standins

# ---- stand-ins: the KServe model server needs its own venv (kserve pins psutil<6, Airflow >=6.1) ---------
FROM airflow AS standins
COPY --from=requirements --chown=airflow:0 /tmp/kfp-bridge/requirements-standins.txt /opt/kfp-bridge/
COPY --chown=airflow:0 requirements/kserve.lock /opt/kfp-bridge/kserve.lock
# requirements/kserve.lock carries no hashes (yet): pip checks versions only for the model server venv.
RUN pip install --no-cache-dir --no-deps --require-hashes -r /opt/kfp-bridge/requirements-standins.txt \
    && python -m venv /home/airflow/.venv-kserve \
    && /home/airflow/.venv-kserve/bin/pip install --no-cache-dir -r /opt/kfp-bridge/kserve.lock
ENV KFP_BRIDGE_KSERVE_PYTHON=/home/airflow/.venv-kserve/bin/python
# Named volumes copy the owner of their mount point: create them as the airflow user.
RUN mkdir -p /opt/airflow/standins /tmp/kfp-bridge/models

# The default target is the Airflow image.
FROM airflow
