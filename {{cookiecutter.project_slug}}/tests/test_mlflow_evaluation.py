"""evaluate.py's tables go to the MLflow run of the checkpoint they score (as artifacts under evaluation/<name>), and
a checkpoint of a run without MLflow leaves MLflow alone."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from test_mlflow import _local_store, _mlflow_config, _only_run, _train  # noqa: F401  # pylint: disable=unused-import

import evaluate
from config.overrides import ROUTINES
from config.paths import GlobalConfig
from extensions.mlflow_tracking import tracking_uri


def test_evaluation_tables_are_artifacts_of_the_run(tmp_path, tiny_config: dict, global_config: GlobalConfig) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (tmp_path / "test_set" / sub).mkdir(parents=True)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32), np.uint8)).save(
            tmp_path / "test_set" / "images" / f"{index}.png"
        )
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8) * 255).save(
            tmp_path / "test_set" / "masks" / f"{index}.png"
        )
    result = _train(ROUTINES[0], _mlflow_config(tiny_config, EPOCHS=1), global_config)
    assert evaluate.main(["--data", str(tmp_path / "test_set"), "--device", "cpu"]) == 0
    client = MlflowClient(tracking_uri(global_config.LOG_DIR))
    mlflow_run = _only_run(client)
    files = {item.path for item in client.list_artifacts(mlflow_run.info.run_id, "evaluation/test_set")}
    assert {"evaluation/test_set/summary.csv", "evaluation/test_set/per_image.csv"} <= files
    assert (result.run_dir / "evaluation" / "test_set" / "summary.csv").is_file()


@pytest.mark.usefixtures("_local_store")
def test_a_run_without_mlflow_leaves_mlflow_alone(tmp_path, global_config: GlobalConfig) -> None:
    from extensions.mlflow_tracking import on_evaluation  # pylint: disable=import-outside-toplevel

    on_evaluation({"config": {"MLFLOW": False}, "extensions": {}}, tmp_path, global_config.LOG_DIR)
    assert not (global_config.LOG_DIR / "mlflow.db").exists()
