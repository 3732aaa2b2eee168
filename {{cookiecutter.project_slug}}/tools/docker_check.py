"""Build the project's images for real and use them: ``make docker-check [ARGS="--variant cuda"]``.

Where no Docker engine runs (CI machines, this template's own), podman does the work as docs/docker.md describes:
installed with apt-get when missing (as root), from a local stand-in for the official Python image when no registry
is in reach (tools/local_base_image.sh), torch's CPU wheel served from 127.0.0.1 when PyTorch's index is out of reach.
Then: one epoch of the default config in the training image, export.py there, predict.py with the .onnx in the
inference image on a folder of synthetic scenes, and the same scenes predicted here with the checkpoint (torch).
The masks must agree except where a probability lies within 1e-4 of the decision (the ONNX parity tolerance).
Prints each step's time and the images' sizes. Exit status: 0 passed or skipped (the reason printed), 1 a
check failed, 2 this machine cannot build (no disk, no base image, no CPU wheel of torch for this Python).
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# pylint: disable=wrong-import-position  # the project's modules, once the project is on the path
from tools.docker_engine import CheckError, base_image, engine, image_size, run, torch_index  # noqa: E402
from utils.data.synthetic import SyntheticShapes  # noqa: E402

FREE_GB = {"cpu": 8, "cuda": 14}  # measured peaks (docs/docker.md) with room: 2.1 GB and 6.1 GB images
TOLERANCE = 1e-4  # export.py's parity bound on logits; a probability this close to the decision may flip


@contextmanager
def step(times: dict[str, float], name: str):
    """Time one step of the check, printed as it ends and kept for the summary."""
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    yield
    times[name] = time.perf_counter() - start
    print(f"== {name}: {times[name]:.0f} s", flush=True)


def write_scenes(folder: Path, count: int = 3, size: int = 300) -> None:
    """Synthetic scenes as PNG, a size that is not a multiple of the U-Net's divisor (padding is exercised)."""
    folder.mkdir(parents=True)
    data = SyntheticShapes(n_samples=count, size=size, seed=7)
    for index in range(count):
        image = (data.generate(index)[0] * 255).round().astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(image.squeeze()).save(folder / f"scene_{index}.png")


def compare(host: Path, container: Path, threshold: float = 0.5) -> tuple[int, int]:
    """(pixels that differ, pixels) of the label maps; raises AssertionError on a difference outside the tolerance."""
    differ = total = 0
    masks = sorted(path.name for path in host.glob("*.png"))
    assert masks and masks == sorted(path.name for path in container.glob("*.png")), "not the same masks written"
    for name in masks:
        ours, theirs = (np.asarray(Image.open(folder / name)) for folder in (host, container))
        probabilities = tifffile.imread(host / name.replace(".png", "_prob.tif"))
        probabilities = probabilities[None] if probabilities.ndim == 2 else probabilities
        if probabilities.shape[0] == 1:  # binary: the distance to the threshold
            margin = np.abs(probabilities[0] - threshold)
        else:  # multi-class: the gap between the two likeliest classes
            top = np.sort(probabilities, axis=0)
            margin = (top[-1] - top[-2]) / 2
        different = ours != theirs
        assert not (different & (margin >= TOLERANCE)).any(), f"{name}: masks differ away from the decision"
        differ, total = differ + int(different.sum()), total + different.size
    return differ, total


class Check:  # pylint: disable=too-few-public-methods  # one run of the check, its steps in order
    """The images built and used in ``work``, a scratch folder; ``times``: each step's seconds."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work, self.times = args, work, {}
        # The images' Python is the project's (pyproject.toml), whatever runs this script
        self.python = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text())[1]
        self.server: subprocess.Popen | None = None
        self.wheel_missing = False  # no CPU wheel of torch for this Python: no cpu image
        self.docker = ""  # docker or podman, once engine() has answered
        self.make: list[str] = []  # make with the engine, base image, network, image name and torch index
        self.folders = {name: work / name for name in ("data", "logs", "weights", "scenes")}

    def run(self) -> None:
        """Build, train, export, predict, compare, then print the masks' agreement and the images' sizes."""
        with step(self.times, "engine"):
            self.docker = engine()
        storage = Path("/var/lib/containers" if self.docker == "podman" else "/var/lib/docker")
        needed = FREE_GB[self.args.variant]
        for folder in (self.work, storage if storage.exists() else Path("/")):
            if (free := shutil.disk_usage(folder).free / 1e9) < needed:
                raise CheckError(f"{free:.0f} GB free in {folder}: the {self.args.variant} image needs {needed} GB")
        with step(self.times, "base image"):
            base = base_image(self.docker, self.python, os.environ.get("BASE_IMAGE"))
        print(f"base image {base}, torch from {os.environ.get('TORCH_INDEX_URL') or 'a local index if one is made'}")
        make = ["make", f"DOCKER={self.docker}", f"BASE_IMAGE={base}", "DOCKER_NETWORK=host"]
        self.make = make + [f"IMAGE={self.args.image}", *self.torch_index()]
        train_image = self.train()
        with step(self.times, "build inference"):
            run(*self.make, "docker-build", "VARIANT=inference")
        (model,) = self.folders["weights"].glob("*/best.onnx")
        write_scenes(self.folders["scenes"])
        self.predict(model, train_image)
        differ, total = compare(self.work / "host", self.work / "container")
        print(f"masks: {differ} of {total} pixels differ (allowed: within {TOLERANCE} of the decision)")
        sizes = {tag: image_size(self.docker, f"{self.args.image}:{tag}") for tag in (train_image, "inference") if tag}
        print(" | ".join(f"{self.args.image}:{tag} {size:.2f} GB" for tag, size in sizes.items()))
        if train_image:
            print(f"inference image / {train_image} image: {sizes['inference'] / sizes[train_image]:.2f}")

    def torch_index(self) -> list[str]:
        """make's TORCH_INDEX_URL for the cpu image: a local index served on 127.0.0.1 unless one is given."""
        if self.args.variant != "cpu" or os.environ.get("TORCH_INDEX_URL"):
            return []
        index = torch_index(self.work / "index", self.python, "fastai" in (ROOT / "requirements.txt").read_text())
        if index is None:
            self.wheel_missing = True
            return []
        self.server = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped in main's finally
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.args.port), "--directory", index],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return [f"TORCH_INDEX_URL=http://127.0.0.1:{self.args.port}/simple"]

    def train(self) -> str | None:
        """One epoch and export.py in the training image; here, without it, where torch's CPU wheel is missing."""
        logs, weights = self.folders["logs"], self.folders["weights"]
        if self.wheel_missing:
            print(
                f"the cpu image is skipped: no CPU wheel of torch for Python {self.python} in reach; the model is "
                "trained here and the inference image checked"
            )
            with step(self.times, "train 1 epoch and export here"):
                env = {"LOG_DIR": str(logs), "WEIGHT_DIR": str(weights)}
                run(sys.executable, "train.py", "--set", "EPOCHS=1", "--set", "SESSION_NAME=check", env=env)
                run(sys.executable, "export.py", env=env)
            return None
        variant, image = self.args.variant, f"{self.args.image}:{self.args.variant}"
        with step(self.times, f"build {variant}"):
            run(*self.make, "docker-build", f"VARIANT={variant}")
        self.folders["data"].mkdir()  # empty: the default config's data is synthetic
        with step(self.times, f"train 1 epoch in {variant}"):
            dirs = [f"DATA_DIR={self.folders['data']}", f"LOG_DIR={logs}", f"WEIGHT_DIR={weights}"]
            run(*self.make, "docker-run", f"VARIANT={variant}", *dirs, "ARGS=--set EPOCHS=1 --set SESSION_NAME=check")
        with step(self.times, f"export in {variant}"):
            volumes = [f"--volume={logs}:/app/logs", f"--volume={weights}:/app/weights"]
            run(self.docker, "run", "--rm", "--network=host", *volumes, image, "python", "export.py")
        return variant

    def predict(self, model: Path, train_image: str | None) -> None:
        """The scenes with the .onnx in the inference image, with the checkpoint in the training image (torch's
        start and speed there) and here (the reference, with its probabilities)."""
        scenes, checkpoint = self.folders["scenes"], str(model.with_suffix(".pt"))
        with step(self.times, "predict in inference (.onnx)"):
            paths = [f"MODEL={model}", f"INPUT={scenes}", f"OUTPUT={self.work / 'container'}"]
            run(*self.make, "docker-predict", *paths, "ARGS=--tile 128 --probabilities")
        if train_image:
            with step(self.times, f"predict in {train_image} (checkpoint, torch)"):
                output = self.work / "torch"
                run(
                    "sh",
                    "tools/docker_mounts.sh",
                    str(os.getuid() or 1000),
                    str(os.getgid() or 1000),
                    "-w",
                    str(output),
                )
                volumes = [f"{scenes}:{scenes}:ro", f"{model.parent}:{model.parent}:ro", f"{output}:{output}"]
                image = f"{self.args.image}:{train_image}"
                command = ["python", "predict.py", "-i", str(scenes), "-o", str(output), "--weights", checkpoint]
                run(
                    self.docker,
                    "run",
                    "--rm",
                    "--network=host",
                    *(f"--volume={v}" for v in volumes),
                    image,
                    *command,
                    "--tile",
                    "128",
                )
        with step(self.times, "predict here (checkpoint, torch)"):
            output = str(self.work / "host")
            run(
                sys.executable,
                "predict.py",
                "-i",
                str(scenes),
                "-o",
                output,
                "--weights",
                checkpoint,
                "--tile",
                "128",
                "--probabilities",
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point: the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--variant", choices=["cpu", "cuda"], default="cpu", help="the training image (default: cpu)")
    parser.add_argument("--image", default=f"{ROOT.name}-check", help="the images' name (tags: the variants)")
    parser.add_argument("--port", type=int, default=8765, help="the local torch index's port on 127.0.0.1")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="docker-check-") as work:
        check = Check(args, Path(work))
        try:
            check.run()
        except CheckError as err:
            print(f"docker-check: {err}", file=sys.stderr)
            return 0 if str(err).startswith("skipped") else 2
        except subprocess.CalledProcessError as err:
            print(
                f"docker-check failed: {shlex.join(err.cmd)} exited {err.returncode} (its output above)",
                file=sys.stderr,
            )
            return 1
        except AssertionError as err:
            print(f"docker-check failed: {err}", file=sys.stderr)
            return 1
        finally:
            if check.server:
                check.server.terminate()
    print(" | ".join(f"{name} {seconds:.0f} s" for name, seconds in check.times.items()))
    print(f"docker-check passed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
