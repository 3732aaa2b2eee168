"""The inference image's stage of the Dockerfile, checked without a Docker engine: the files it copies predict with
an .onnx file, without torch, importing only what requirements-inference.txt installs (``make docker-check`` builds
and runs it for real)."""

import json
import shutil
from pathlib import Path

from dockerfile_parser import copy_sources, only, parse_dockerfile, stage
from test_onnx_predict import imported_distributions, inference_distributions, onnx_scenes

from config.paths import ROOT_PATH as PROJECT_ROOT


def inference_stage() -> list:
    """The instructions of the Dockerfile's ``inference`` stage."""
    return stage(parse_dockerfile((PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")), "inference")


def test_the_copied_files_predict_without_torch(tmp_path: Path) -> None:
    app = tmp_path / "app"  # the image's /app: what the stage copies, where its COPY puts it
    for copy in only(inference_stage(), "COPY"):
        destination = app / copy.args.split()[-1]
        destination.mkdir(parents=True, exist_ok=True)
        for source in copy_sources(copy):
            shutil.copy(PROJECT_ROOT / source, destination / Path(source).name)
    model, scenes = onnx_scenes(tmp_path)
    output = tmp_path / "masks"
    imported = imported_distributions("-i", str(scenes), "-o", str(output), "--weights", str(model), cwd=app)
    assert imported <= inference_distributions()
    assert sorted(path.name for path in output.iterdir()) == ["a.png", "b.png"]


def test_the_stage_installs_requirements_inference_and_runs_predict() -> None:
    instructions = inference_stage()
    (install,) = only(instructions, "RUN")
    assert install.args == "pip install -r requirements-inference.txt -c constraints.txt"
    assert "torch" not in (PROJECT_ROOT / "requirements-inference.txt").read_text(encoding="utf-8").split()
    (entrypoint,) = only(instructions, "ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["python", "predict.py"]
    assert only(instructions, "USER")[-1].args == "app"
