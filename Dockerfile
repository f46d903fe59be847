# syntax=docker/dockerfile:1
# Airflow 3.3 (official image, Python 3.11) with kfp-bridge installed at the versions in uv.lock.
#
#   docker build -t kfp-bridge-airflow .                      # the Airflow image (compose: x-airflow-common)
#   docker build --target standins -t kfp-bridge-standins .   # + the KServe venv the kube stand-in needs
#
# The base tag must match the apache-airflow version pinned in uv.lock (tests/deploy checks it).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG UV_VERSION=0.13.9

# ---- constraints: every locked runtime version, exported from uv.lock ---------------------------------
FROM python:3.11-slim AS constraints
ARG UV_VERSION
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock ./
# --frozen: read the lock file as committed, never re-resolve.
RUN uv export --frozen --no-dev --no-hashes --no-emit-project --extra examples -o /constraints.txt

# ---- the Airflow image ----------------------------------------------------------------------------------
FROM ${AIRFLOW_IMAGE} AS airflow
COPY --from=constraints --chown=airflow:0 /constraints.txt /opt/kfp-bridge/constraints.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/kfp-bridge/src/
COPY --chown=airflow:0 kfp_bridge /opt/kfp-bridge/src/kfp_bridge
USER airflow
# Naming apache-airflow at the image's version keeps pip from replacing the Airflow the image ships;
# the constraints pin everything else to uv.lock. The `examples` extra (scikit-learn, joblib) is what
# the example pipeline's components import when the KFP stand-in runs them.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/kfp-bridge/src[examples]" \
        --constraint /opt/kfp-bridge/constraints.txt \
    && kfp-bridge --help > /dev/null \
    && mkdir -p /opt/airflow/standins

# ---- stand-ins: the KServe model server needs its own venv (kserve pins psutil<6, Airflow >=6.1) ---------
FROM airflow AS standins
COPY --chown=airflow:0 requirements/kserve.lock /opt/kfp-bridge/kserve.lock
RUN python -m venv /home/airflow/.venv-kserve \
    && /home/airflow/.venv-kserve/bin/pip install --no-cache-dir -r /opt/kfp-bridge/kserve.lock
ENV KFP_BRIDGE_KSERVE_PYTHON=/home/airflow/.venv-kserve/bin/python
# Named volumes copy the owner of their mount point: create them as the airflow user.
RUN mkdir -p /opt/airflow/standins /tmp/kfp-bridge/models

# The default target is the Airflow image.
FROM airflow
