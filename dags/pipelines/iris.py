# ruff: noqa: I002
"""Example KFP pipeline: train an iris classifier and export ``model.joblib`` for KServe.

dataset → train → evaluate → export, passing artifacts between tasks. Every component is a
lightweight Python component with ``install_kfp_package=False`` and no ``packages_to_install``, so
kfp.local's ``SubprocessRunner(use_venv=False)`` runs it offline in the current environment (which
must have scikit-learn and joblib: the ``examples`` extra).

This file deliberately has no ``from __future__ import annotations``: kfp reads the component and
pipeline annotations when the decorators run and cannot resolve PEP 563 string annotations (it
fails with "Artifacts must have both a schema_title and a schema_version ... Got: float").

Compile with ``kfp-bridge compile dags/pipelines/iris.py``; the suite fails when ``iris.yaml`` is
stale. Imports live inside the component bodies because only the function source is shipped to
the executor.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

# Pinned rather than left to kfp's default, which changes between SDK releases (3.11 -> 3.12 in 2027)
# and would silently change the image a cluster runs.
BASE_IMAGE = "python:3.11"


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def load_iris_dataset(dataset: Output[Dataset]):
    """Write scikit-learn's bundled iris data as CSV (4 feature columns, then the integer label)."""
    import numpy as np
    from sklearn.datasets import load_iris

    data = load_iris()
    table = np.column_stack([data.data, data.target])
    header = ",".join([*data.feature_names, "target"])
    np.savetxt(dataset.path, table, delimiter=",", header=header, comments="", fmt="%.6g")
    dataset.metadata["rows"] = int(table.shape[0])


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train_classifier(
    dataset: Input[Dataset],
    model: Output[Model],
    test_set: Output[Dataset],
    C: float,
    max_iter: int,
    test_size: float,
    seed: int,
):
    """Fit a logistic regression on a stratified split; the held-out rows go to ``test_set``."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    table = np.loadtxt(dataset.path, delimiter=",", skiprows=1)
    features, labels = table[:, :-1], table[:, -1].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    classifier = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    classifier.fit(x_train, y_train)
    joblib.dump(classifier, model.path)
    model.metadata["framework"] = "sklearn"

    # The evaluator must score exactly the rows the model never saw, so they travel as an artifact
    # instead of being re-split downstream.
    np.savetxt(test_set.path, np.column_stack([x_test, y_test]), delimiter=",", fmt="%.6g")


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_classifier(model: Input[Model], test_set: Input[Dataset], metrics: Output[Metrics]) -> float:
    """Return the accuracy on the held-out rows and log it as a KFP metric."""
    import joblib
    import numpy as np

    table = np.loadtxt(test_set.path, delimiter=",", ndmin=2)
    classifier = joblib.load(model.path)
    accuracy = float(classifier.score(table[:, :-1], table[:, -1].astype(int)))
    metrics.log_metric("accuracy", accuracy)
    return accuracy


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export_model(model: Input[Model], model_dir: str, accuracy: float, min_accuracy: float) -> str:
    """Copy the model to ``<model_dir>/model.joblib`` (the file KServe's sklearn server loads).

    Refuses to export below ``min_accuracy`` so a bad model never reaches the serving directory.
    """
    import os
    import shutil
    import tempfile

    if accuracy < min_accuracy:
        raise ValueError(
            f"accuracy {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}; not exporting. "
            "Tune C/max_iter or lower the min_accuracy pipeline parameter."
        )
    os.makedirs(model_dir, exist_ok=True)
    target = os.path.join(model_dir, "model.joblib")
    # A model server may be reading the previous file: write beside it, then swap atomically.
    fd, partial = tempfile.mkstemp(dir=model_dir, prefix=".model.joblib.")
    os.close(fd)
    shutil.copyfile(model.path, partial)
    # mkstemp creates the file 0600; the model server often runs as another user.
    os.chmod(partial, 0o644)
    os.replace(partial, target)
    return target


@dsl.pipeline(name="iris-train", description="Train an iris classifier and export model.joblib for KServe.")
def iris_pipeline(
    model_dir: str,
    C: float = 1.0,
    max_iter: int = 200,
    test_size: float = 0.25,
    seed: int = 42,
    min_accuracy: float = 0.8,
) -> float:
    dataset_task = load_iris_dataset()
    train_task = train_classifier(
        dataset=dataset_task.outputs["dataset"],
        C=C,
        max_iter=max_iter,
        test_size=test_size,
        seed=seed,
    )
    evaluate_task = evaluate_classifier(
        model=train_task.outputs["model"],
        test_set=train_task.outputs["test_set"],
    )
    export_model(
        model=train_task.outputs["model"],
        model_dir=model_dir,
        accuracy=evaluate_task.outputs["Output"],
        min_accuracy=min_accuracy,
    )
    return evaluate_task.outputs["Output"]
