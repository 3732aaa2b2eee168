"""One pass of predict.py on a scene in a child process of its own, so that its peak resident memory is its own.

The helpers of benchmarks/predict_scene.py and its ONNX comparison: the project's default model saved as a
checkpoint, a test scene, and :func:`run_pass`, which runs this file as the child:
``python scene_pass.py PROJECT WEIGHTS SCENE OUTPUT TILE OVERLAP DEVICE [PREDICT FLAGS...]`` (``WEIGHTS``:
checkpoints or one .onnx file joined by commas) prints the pass's figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GB = 1e9


def child(  # noqa: PLR0913
    project: str, weights: str, scene: str, output: str, tile: str, overlap: str, device: str, *flags: str
) -> None:
    """In the child process: predict one scene with predict.main and print its timings as JSON, with whether torch
    was imported (an .onnx file must predict without it, else its memory would carry torch's)."""
    sys.path.insert(0, project)
    os.chdir(project)
    import predict  # noqa: PLC0415  # the baked project's, after its folder went on sys.path

    # Imported here so that their cost stays out of the timing: predict imports them on the first scene
    if weights.endswith(".onnx"):
        import utils.onnx_inference  # noqa: F401, PLC0415
    else:
        import utils.tiling  # noqa: F401, PLC0415

        if int(tile):
            import monai.inferers  # noqa: F401, PLC0415

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    args = ["-i", scene, "-o", output, "--weights", *weights.split(","), "--device", device, "--tile", tile]
    status = predict.main([*args, "--overlap", overlap, *flags])
    if device.startswith("cuda") and "torch" in sys.modules:
        sys.modules["torch"].cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({"status": status, "seconds": seconds, "baseline": baseline, "torch": "torch" in sys.modules}))


def run_pass(  # noqa: PLR0913
    project: Path,
    weights: list[Path],
    scene: Path,
    output: Path,
    tile: int,
    args: argparse.Namespace,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Time one pass (predict.py's ``flags`` added: ``--tta``, ``--probabilities``) in a child process, writing to
    ``output``, and read its peak memory from the kernel's accounting of that child."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    command = [sys.executable, __file__, str(project), ",".join(map(str, weights)), str(scene), str(output)]
    command += [str(tile), str(args.overlap), args.device, *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, not a sum over all children
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the child exited {process.returncode}: {stderr[-2000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    if figures["status"] != 0:
        raise RuntimeError(f"predict.py exited {figures['status']}: {stderr[-2000:]}")
    return {**figures, "peak": usage.ru_maxrss * 1024}


def save_model(project: Path, path: Path, args: argparse.Namespace, seed: int = 0) -> dict[str, Any]:
    """The project's default model, seeded and untrained, in a checkpoint with normalisation; its MODEL_CONFIG."""
    sys.path.insert(0, str(project))
    import torch
    from config.serialize import to_jsonable
    from config.train_config import TRAIN_CONFIG
    from training.checkpoint import FORMAT_VERSION

    model_config = dict(TRAIN_CONFIG["MODEL_CONFIG"])
    if args.base_channels:
        model_config["base_channels"] = args.base_channels
    if args.depth:
        model_config["depth"] = args.depth
    torch.manual_seed(seed)
    model = TRAIN_CONFIG["MODEL"](**model_config)
    config = {**TRAIN_CONFIG, "MODEL_CONFIG": model_config}
    stats = {"method": "meanstd", "mean": [0.5], "std": [0.25]}
    saved = {"format_version": FORMAT_VERSION, "model": model.state_dict(), "config": to_jsonable(config)}
    torch.save({**saved, "normalization": stats}, path)
    return model_config


def write_scene(path: Path, width: int, height: int) -> None:
    """A 16-bit grey PNG: a gradient under noise (compressible enough to write quickly, not constant)."""
    import numpy as np
    from PIL import Image

    rows = np.linspace(0, 50000, height, dtype=np.uint16)[:, None]
    noise = np.random.default_rng(0).integers(0, 8000, (height, width), dtype=np.uint16)
    Image.fromarray((rows + noise).astype(np.uint16)).save(path)


if __name__ == "__main__":
    child(*sys.argv[1:])
