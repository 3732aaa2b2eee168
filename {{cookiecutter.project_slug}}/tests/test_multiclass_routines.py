"""The routines are interchangeable on multi-class, multi-band data too: on a 3-class, 4-band synthetic set they
write the same columns (a dice per class and their mean) and numbers that agree."""

import copy
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import predict
from config.overrides import ROUTINES
from config.paths import GlobalConfig, get_global_config
from config.serialize import load_file_module

pytestmark = pytest.mark.slow


def multiclass_config(tiny_config: dict) -> dict:
    """configs/multiclass.py on the tiny settings: 3 classes, 4 bands, 40 images of 32x32, two epochs."""
    config = copy.deepcopy(tiny_config)
    config.update(copy.deepcopy(load_file_module(Path(__file__).parents[1] / "configs" / "multiclass.py").TRAIN_CONFIG))
    config["MODEL_CONFIG"].update(base_channels=4, depth=2)
    config["DATASET_CONFIG"].update(n_samples=40, size=32)
    config.update(EPOCHS=2, DEVICE="cpu", SESSION_NAME="parity")
    config["DATA_LOADER_CONFIG"] = {"batch_size": 12, "num_workers": 0}  # 32 training samples: a short last batch
    config["OPTIMIZER_CONFIG"] = {"lr": 0.03, "weight_decay": 1e-4}
    return config


def test_three_classes_four_bands_agree_across_routines(
    tiny_config: dict, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    histories = {}
    for routine in ROUTINES:
        for name in ("DATA_DIR", "LOG_DIR", "WEIGHT_DIR"):
            monkeypatch.setenv(name, str(tmp_path_factory.mktemp(routine) / name.lower()))
        folders: GlobalConfig = get_global_config()
        module = importlib.import_module(f"training.{routine}_training")
        result = module.train(multiclass_config(tiny_config), folders)
        assert result.status == "completed"
        histories[routine] = pd.read_csv(result.run_dir / "history.csv")
        model, bands = predict.load_model(result.weight_dir / "best.pt", torch.device("cpu"))
        assert bands == 4 and model(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)

    classes = ["background", "circle_triangle", "rectangle"]
    columns = [f"val_dice_{name}" for name in classes]
    reference = histories[ROUTINES[0]]
    assert set(columns) | {"val_dice", "val_iou"} <= set(reference.columns)
    np.testing.assert_allclose(reference["val_dice"], reference[columns].mean(axis=1), rtol=0, atol=1e-6)
    for routine, frame in histories.items():
        assert list(frame.columns) == list(reference.columns), routine
        np.testing.assert_allclose(frame[columns], reference[columns], rtol=0, atol=0.03, err_msg=routine)
    if {"pytorch", "ignite"} <= set(histories):  # the same steps: the same losses up to float rounding
        np.testing.assert_allclose(histories["ignite"]["train_loss"], histories["pytorch"]["train_loss"], atol=1e-4)
