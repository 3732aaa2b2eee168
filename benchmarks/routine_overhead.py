"""Routine overhead: each training routine's time per step against a bare, hand-written loop.

Bakes the default project (every routine on) into a temporary folder, then, in this one process, trains the same
model on the same data for the same number of optimizer steps with

- ``bare``: a plain DataLoader over the same train/validation split, the same optimizer, scheduler, loss and
  gradient clipping, one validation pass an epoch computing the same metrics; no logs, no checkpoints, no checks;
- each routine of the baked project: ``training.<name>_training.train(config, global_config)``, everything on
  (sanity checks, history.csv, experiments.csv, curves.png, TensorBoard, checkpoints), logs in a temporary folder.

Runs are interleaved (bare, pytorch, ignite, fastai, bare, ...) for ``--rounds`` rounds after one unmeasured
warm-up round, and each routine's time is divided by the bare loop's of the same round. Printed per routine, as
medians over the rounds with the spread (min-max) of the per-round ratios:

- s/step, step ratio: the time per training step, i.e. the training part of each epoch (from the start of the epoch,
  batch order seeded, to the end of its last optimizer step: data loading, forward, backward, step, per-step logging
  and the framework's events) over the steps, and its ratio to the bare loop's;
- CPU step ratio: the same ratio with this process's CPU seconds, which other work on a shared machine inflates far
  less than wall time (with one torch thread, CPU time is close to what the wall time of a quiet machine would be);
- s/run, run ratio, CPU run ratio: the same for the whole ``train()`` call (building, sanity checks, validation,
  records, checkpoints, plots: the fixed costs included);
- s outside epochs: wall seconds per run outside the epochs, and a second table of where they go (sanity checks,
  curves.png, checkpoints, the rest);
- val dice: the final validation dice, the same for every variant when they all did the same work.

Also printed: the share of the bare loop's training time spent blocked in ``next(iter(loader))`` with the project's
DataLoader settings (the config's DATA_LOADER_CONFIG, pinned memory on CUDA) and, when they differ, with torch's
DataLoader defaults; and each routine module's import time (paid once per process, not counted above).

Usage: ``make bench``, or ``python benchmarks/routine_overhead.py --help`` for the options (rounds, epochs, size...).
Never imports torchvision or fastai.vision.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
ROUTINE_ORDER = ("pytorch", "ignite", "fastai")  # the order of the runs in a round, after the bare loop
THREADS = 1  # torch threads of every run (--threads)
DEFAULTS = "bare, torch's DataLoader defaults"  # the bare loop's variant for the data wait with torch's defaults


def cpu_model() -> str:
    """The processor's name where Linux tells it, else what platform knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default: 5)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default: 3)")
    parser.add_argument(
        "--samples", type=int, default=120, help="SyntheticShapes samples, 20%% for validation (default: 120)"
    )
    parser.add_argument("--size", type=int, default=64, help="image height and width (default: 64)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16, the project's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, the same for every run (default: 1, steady on a shared machine; 0: torch's default)",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps | auto (default: cpu)")
    parser.add_argument(
        "--mixed-precision",
        default="False",
        choices=["False", "True", "bf16", "fp16"],
        help="MIXED_PRECISION of every run, the bare loop's too (default: False; fp16 needs CUDA)",
    )
    parser.add_argument("--channels-last", action="store_true", help="CHANNELS_LAST=True for every run")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader num_workers (default: the config's, 0)"
    )
    parser.add_argument("--routines", default=",".join(ROUTINE_ORDER), help="routines to time (default: all)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up round")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.epochs < 1 or args.samples < 10 or args.size < 8:
        parser.error("need --rounds >= 1, --epochs >= 1, --samples >= 10, --size >= 8")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# The baked project
# ---------------------------------------------------------------------------------------------------------------------


def bake(output_dir: Path) -> Path:
    """The default project with every routine on, baked into ``output_dir``; its root goes first on sys.path."""
    from cookiecutter.main import cookiecutter

    context = {"routine_pytorch": True, "routine_ignite": True, "routine_fastai": True}
    # default_config: a user's ~/.cookiecutterrc must not change the project that is measured
    project = cookiecutter(
        str(TEMPLATE_DIR), no_input=True, output_dir=str(output_dir), extra_context=context, default_config=True
    )
    project = Path(project)
    sys.path.insert(0, str(project))
    return project


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    """The project's TRAIN_CONFIG, scaled by the options; early stopping off so every run takes the same steps."""
    from config.schema import validate_config
    from config.train_config import TRAIN_CONFIG

    config = copy.deepcopy(TRAIN_CONFIG)
    config["DATASET_CONFIG"] = {**config["DATASET_CONFIG"], "n_samples": args.samples, "size": args.size}
    config["DATA_LOADER_CONFIG"] = {**config["DATA_LOADER_CONFIG"], "batch_size": args.batch_size}
    config["EPOCHS"] = args.epochs
    config["EARLY_STOPPING"] = None
    if args.num_workers is not None:
        config["DATA_LOADER_CONFIG"]["num_workers"] = args.num_workers
    config["DEVICE"] = args.device
    config["MIXED_PRECISION"] = {"False": False, "True": True}.get(args.mixed_precision, args.mixed_precision)
    config["CHANNELS_LAST"] = args.channels_last
    config = validate_config(config)  # every key, defaults filled in: what the routines see, and the bare loop too
    # The bare loop below does what these settings ask and nothing else; other values would need more code there.
    assert config["ONE_CYCLE"] is None and not config["LR_FIND"] and config["COMPILE"] is False
    return config


def load_routines(names: list[str]) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """Import ``training.<name>_training`` for each name: modules, import seconds, and why some were skipped."""
    import training.run  # noqa: F401  # torch, pandas, matplotlib: shared by all, timed by none

    modules, seconds, skipped = {}, {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"training.{name}_training")
        except Exception as err:  # a missing or broken routine is reported, not fatal
            skipped[name] = f"{type(err).__name__}: {err}".splitlines()[0][:160]
            continue
        seconds[name] = time.perf_counter() - start
        modules[name] = module
    return modules, seconds, skipped


# Parts of a run paid outside its epochs, timed by wrapping them where they are called (module, name).
TIMED_PARTS = {
    "sanity checks": ("training.run", "sanity_checks"),
    "curves.png": ("training.records", "plot_history"),
    "checkpoints": ("training.checkpoint", "save_checkpoint"),
}
SPENT: dict[str, float] = {}  # label -> seconds in the current run
EPOCH_CPU: list[float] = []  # CPU seconds of each epoch of the current run, over the span of history.csv's seconds
TRAIN_SPANS: list[tuple[float, float]] = []  # (wall, CPU) seconds of each epoch's training part in the current run
_EPOCH_MARK = [0.0, 0.0, 0.0]  # CPU clock at the epoch's start (end of begin_epoch), then wall and CPU clock
_LAST_STEP = [0.0, 0.0]  # wall and CPU clock at the end of the last optimizer step (Run.end_step)


def time_parts() -> list[str]:
    """Wrap TIMED_PARTS with timers that add to SPENT; returns the labels found."""
    from training.run import Run

    found = []
    for label, (module_name, name) in TIMED_PARTS.items():
        owner: Any = importlib.import_module(module_name)
        function = getattr(owner, name, None)
        if function is None:
            continue

        def timed(*args: Any, _function: Any = function, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                SPENT[_label] = SPENT.get(_label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)
        found.append(label)

    # Each epoch's CPU seconds: from the end of Run.begin_epoch to the start of Run.end_epoch, as history's seconds;
    # its training part: from the end of Run.begin_epoch to the end of the epoch's last Run.end_step, which every
    # routine calls after each optimizer step (after loss.item(), a sync point on a GPU).
    begin_epoch, end_step, end_epoch = Run.begin_epoch, Run.end_step, Run.end_epoch

    def begin_epoch_timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = begin_epoch(self, *args, **kwargs)
        _EPOCH_MARK[:] = [time.process_time(), time.perf_counter(), time.process_time()]
        return result

    def end_step_timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = end_step(self, *args, **kwargs)
        _LAST_STEP[:] = [time.perf_counter(), time.process_time()]
        return result

    def end_epoch_timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        EPOCH_CPU.append(time.process_time() - _EPOCH_MARK[0])
        TRAIN_SPANS.append((_LAST_STEP[0] - _EPOCH_MARK[1], _LAST_STEP[1] - _EPOCH_MARK[2]))
        return end_epoch(self, *args, **kwargs)

    Run.begin_epoch, Run.end_step = begin_epoch_timed, end_step_timed
    Run.end_epoch = end_epoch_timed
    return found


# ---------------------------------------------------------------------------------------------------------------------
# One measured run
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Measure:
    """One run: wall seconds, optimizer steps, per-epoch seconds, data wait (bare only) and the final val dice."""

    wall: float
    cpu: float  # CPU seconds of this process over the same span: what contention on a shared machine cannot inflate
    steps: int
    epoch_seconds: list[float]
    epoch_cpu: list[float]
    val_dice: float
    train_seconds: float  # the training parts of the epochs (see the module's docstring), wall and CPU
    train_cpu: float
    data_wait: float = math.nan  # seconds blocked in next(iter(loader)) (bare loop only)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_step(self) -> float:
        """Wall seconds per training step."""
        return self.train_seconds / self.steps

    @property
    def cpu_per_step(self) -> float:
        """CPU seconds per training step."""
        return self.train_cpu / self.steps

    @property
    def run_per_step(self) -> float:
        """Wall seconds of the whole run per step."""
        return self.wall / self.steps

    @property
    def run_cpu_per_step(self) -> float:
        """CPU seconds of the whole run per step."""
        return self.cpu / self.steps

    @property
    def outside_epochs(self) -> float:
        return self.wall - sum(self.epoch_seconds)


def project_loader_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader settings of a run (training.data.build_loaders): pinned memory on CUDA, then the config's."""
    from config.device import get_device

    return {"pin_memory": get_device(config["DEVICE"]).type == "cuda", **config["DATA_LOADER_CONFIG"]}


def project_loader_differs(config: dict[str, Any]) -> bool:
    """Whether the project's DataLoader settings differ from torch's defaults in more than the batch size."""
    import inspect

    from torch.utils.data import DataLoader

    defaults = {name: p.default for name, p in inspect.signature(DataLoader).parameters.items()}
    return any(defaults.get(k) != v for k, v in project_loader_kwargs(config).items() if k != "batch_size")


def bare_loop(config: dict[str, Any], torch_loader_defaults: bool = False) -> Measure:
    """The same training, written the shortest way: no records, no checks, no checkpoints.

    ``torch_loader_defaults``: DataLoaders with torch's defaults (only the batch size from the config, no pinned
    memory) instead of the project's settings, to see what the data pipeline costs with each.
    """
    import torch
    from config.device import get_device
    from torch.utils.data import DataLoader
    from training.build import autocast_dtype, build_loss, build_metrics, build_scheduler  # the same parts
    from training.checkpoint import set_seed
    from training.data import build_datasets  # the same data: split, normalisation, encoded masks

    start, cpu_start = time.perf_counter(), time.process_time()
    set_seed(config["SEED"])
    device = get_device(config["DEVICE"])
    train_set, val_set, _ = build_datasets(config)
    loader_kwargs = project_loader_kwargs(config)
    if torch_loader_defaults:
        loader_kwargs = {"batch_size": config["DATA_LOADER_CONFIG"].get("batch_size", 1)}
    order = torch.Generator()
    train_loader = DataLoader(train_set, shuffle=True, generator=order, **loader_kwargs)
    val_loader = DataLoader(val_set, shuffle=False, **loader_kwargs)
    layout = torch.channels_last if config["CHANNELS_LAST"] else torch.preserve_format
    model = config["MODEL"](**config["MODEL_CONFIG"]).to(device, memory_format=layout)
    optimizer = config["OPTIMIZER"](model.parameters(), **config["OPTIMIZER_CONFIG"])
    scheduler = build_scheduler(config, optimizer, len(train_loader))  # its length follows EPOCHS, as in a run
    loss_fn = build_loss(config)  # LOSS with its task and LOSS_CONFIG, as every routine calls it
    metrics = build_metrics(config)  # a MetricSums: the logged columns' sums and counts (utils/metric_sums.py)
    dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    steps, data_wait, train_seconds, train_cpu, epoch_seconds, epoch_cpu, val = 0, 0.0, 0.0, 0.0, [], [], {}
    for epoch in range(1, config["EPOCHS"] + 1):
        order.manual_seed(config["SEED"] * 100_003 + epoch)  # the routines' batch order (training.data.set_epoch)
        epoch_start, epoch_cpu_start = time.perf_counter(), time.process_time()
        model.train()
        batches = iter(train_loader)
        while True:
            fetch_start = time.perf_counter()
            try:
                images, masks = next(batches)
            except StopIteration:
                break
            data_wait += time.perf_counter() - fetch_start
            images = images.to(device, non_blocking=True, memory_format=layout)
            masks = masks.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(images)
            loss = loss_fn(logits.float(), masks)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config["GRAD_CLIP"]:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config["GRAD_CLIP"])
            scaler.step(optimizer)
            scaler.update()
            loss.item()  # what any loop does to show or average its loss (and a sync point on a GPU)
            steps += 1
            step_end, step_cpu_end = time.perf_counter(), time.process_time()
        train_seconds += step_end - epoch_start
        train_cpu += step_cpu_end - epoch_cpu_start
        model.eval()
        loss_sum, count = 0.0, 0
        metrics.reset()  # sums and counts of the defined values per (metric, class), as the routines keep them
        with torch.no_grad():
            for images, masks in val_loader:
                images = images.to(device, non_blocking=True, memory_format=layout)
                masks = masks.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = model(images)
                logits = logits.float()
                loss_sum += loss_fn(logits, masks).item() * len(images)
                metrics.update(logits, masks)
                count += len(images)
        val = {"loss": loss_sum / count, **metrics.compute()}
        if scheduler is not None:
            scheduler.step()
        epoch_seconds.append(time.perf_counter() - epoch_start)
        epoch_cpu.append(time.process_time() - epoch_cpu_start)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    dice = val.get("dice", math.nan)
    return Measure(wall, cpu, steps, epoch_seconds, epoch_cpu, dice, train_seconds, train_cpu, data_wait)


def routine_run(module: Any, config: dict[str, Any], run_dir: Path, steps_per_epoch: int) -> Measure:
    """One ``train()`` of a routine, its logs and weights under ``run_dir``; steps counted from history.csv."""
    import pandas as pd
    from config.paths import GlobalConfig

    global_config = GlobalConfig(
        ROOT_PATH=run_dir, DATA_DIR=run_dir / "data", LOG_DIR=run_dir / "logs", WEIGHT_DIR=run_dir / "weights"
    )
    config = copy.deepcopy(config)
    SPENT.clear()
    EPOCH_CPU.clear()
    TRAIN_SPANS.clear()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = module.train(config, global_config)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    spent, epoch_cpu, spans = dict(SPENT), list(EPOCH_CPU), list(TRAIN_SPANS)
    if result.status != "completed":
        raise RuntimeError(f"run {result.run_name} {result.status}: {result.error}")
    history = pd.read_csv(result.run_dir / "history.csv")
    if len(history) != config["EPOCHS"]:
        raise RuntimeError(f"run {result.run_name} trained {len(history)} epochs, not {config['EPOCHS']}")
    steps = len(history) * steps_per_epoch
    train_seconds, train_cpu = (sum(span[i] for span in spans) for i in (0, 1))
    dice = float(history["val_dice"].iloc[-1])
    return Measure(
        wall, cpu, steps, history["seconds"].tolist(), epoch_cpu, dice, train_seconds, train_cpu, extra=spent
    )


@contextlib.contextmanager
def quiet() -> Any:
    """Progress bars and prints go nowhere, as in a log file (every routine then writes one line an epoch at most)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield sink


def measure(name: str, modules: dict[str, Any], config: dict[str, Any], run_dir: Path, steps_per_epoch: int) -> Measure:
    import torch

    torch.set_num_threads(THREADS)  # again, in case a framework changed it
    gc.collect()
    with quiet():
        if name in ("bare", DEFAULTS):
            return bare_loop(config, torch_loader_defaults=name == DEFAULTS)
        return routine_run(modules[name], config, run_dir, steps_per_epoch)


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def report(names: list[str], runs: dict[str, list[Measure]]) -> list[dict[str, Any]]:
    """One row per variant: medians over rounds; ratios to the bare run of the same round, with their spread."""
    bare = runs["bare"]

    def ratios(mine: list[Measure], attribute: str) -> list[float]:
        return [getattr(m, attribute) / getattr(b, attribute) for m, b in zip(mine, bare, strict=True)]

    rows = []
    for name in names:
        mine = runs[name]
        step, step_cpu = ratios(mine, "per_step"), ratios(mine, "cpu_per_step")
        run, run_cpu = ratios(mine, "run_per_step"), ratios(mine, "run_cpu_per_step")
        rows.append(
            {
                "routine": name,
                "s_per_step": _median([m.per_step for m in mine]),
                "step_ratio": _median(step),
                "step_spread": _spread(step),
                "step_cpu_ratio": _median(step_cpu),
                "step_cpu_spread": _spread(step_cpu),
                "s_per_run": _median([m.wall for m in mine]),
                "run_ratio": _median(run),
                "run_spread": _spread(run),
                "run_cpu_ratio": _median(run_cpu),
                "run_cpu_spread": _spread(run_cpu),
                "outside_epochs_s": _median([m.outside_epochs for m in mine]),
                "val_dice": _median([m.val_dice for m in mine]),
            }
        )
    return rows


COLUMNS = (  # (header, key, digits): the table is Markdown, ready for docs/routines.md
    ("routine", "routine", None),
    ("s/step", "s_per_step", 4),
    ("step ratio", "step_ratio", 2),
    ("spread", "step_spread", None),
    ("CPU step ratio", "step_cpu_ratio", 2),
    ("CPU spread", "step_cpu_spread", None),
    ("s/run", "s_per_run", 2),
    ("run ratio", "run_ratio", 2),
    ("spread", "run_spread", None),
    ("CPU run ratio", "run_cpu_ratio", 2),
    ("CPU spread", "run_cpu_spread", None),
    ("s outside epochs", "outside_epochs_s", 2),
    ("val dice", "val_dice", 3),
)


def print_markdown(lines: list[list[str]]) -> None:
    """A Markdown table, header first; the first column left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    rule = ["-" * widths[0], *("-" * (width - 1) + ":" for width in widths[1:])]
    for index, line in enumerate([lines[0], rule, *lines[1:]]):
        cells = zip(line, widths, strict=True)
        padded = [
            cell.ljust(w) if column == 0 or index < 2 else cell.rjust(w) for column, (cell, w) in enumerate(cells)
        ]
        print("| " + " | ".join(padded) + " |")


def print_table(rows: list[dict[str, Any]]) -> None:
    lines = [[header for header, _, _ in COLUMNS]]
    for row in rows:
        lines.append([row[key] if digits is None else _num(row[key], digits) for _, key, digits in COLUMNS])
    print_markdown(lines)


def print_parts(names: list[str], runs: dict[str, list[Measure]], parts: list[str]) -> None:
    """Where a routine's seconds outside its epochs go (medians over rounds)."""
    lines = [["routine", "s outside epochs", *parts, "the rest (build, records, finish)"]]
    for name in names:
        mine = runs[name]
        rest = [m.outside_epochs - sum(m.extra.get(part, 0.0) for part in parts) for m in mine]
        values = [_median([m.extra.get(part, 0.0) for m in mine]) for part in parts]
        outside = _median([m.outside_epochs for m in mine])
        lines.append([name, *(_num(value, 2) for value in [outside, *values, _median(rest)])])
    print_markdown(lines)


def main(argv: list[str] | None = None) -> int:
    global THREADS  # the one setting every run shares
    args = parse_args(argv)
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="routine_overhead_") as tmp:
        tmp_dir = Path(tmp)
        with quiet():
            bake(tmp_dir / "bake")
        import torch

        THREADS = args.threads or torch.get_num_threads()
        torch.set_num_threads(THREADS)
        wanted = [name.strip() for name in args.routines.split(",") if name.strip()]
        modules, import_seconds, skipped = load_routines(wanted)
        parts = time_parts()
        names = [name for name in wanted if name in modules]
        config = bench_config(args)

        # The number of steps an epoch takes, from the same split and loader settings as every run.
        from torch.utils.data import DataLoader
        from training.data import build_datasets

        train_set, val_set, _ = build_datasets(config)
        loader_differs = project_loader_differs(config)
        steps_per_epoch = len(DataLoader(train_set, **config["DATA_LOADER_CONFIG"]))
        model = config["MODEL"](**config["MODEL_CONFIG"])
        shape = ", ".join(f"{k}={v}" for k, v in config["MODEL_CONFIG"].items() if k in ("base_channels", "depth"))
        loader = config["DATA_LOADER_CONFIG"]
        print(f"routine overhead, {datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}")
        print(
            f"  python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
            f"torch threads {THREADS} (the same for every run), device {args.device}, MIXED_PRECISION "
            f"{config['MIXED_PRECISION']}, CHANNELS_LAST {config['CHANNELS_LAST']}"
        )
        print(
            f"  {config['MODEL'].__name__}({shape}; {sum(p.numel() for p in model.parameters()):,} parameters) "
            f"on {config['DATASET'].__name__} {args.size}x{args.size}, {len(train_set)} train / {len(val_set)} val "
            f"samples, batch {loader['batch_size']}, num_workers {loader.get('num_workers', 0)}"
        )
        print(
            f"  {config['OPTIMIZER'].__name__}, {getattr(config['LOSS'], '__name__', config['LOSS'])}, "
            f"{args.epochs} epoch(s) x {steps_per_epoch} steps = {args.epochs * steps_per_epoch} steps a run, "
            f"{args.rounds} round(s) (+ {'no' if args.no_warmup else 'one'} warm-up)"
        )
        for name, why in skipped.items():
            print(f"  {name}: skipped ({why})")
        sys.stdout.flush()

        variants = ["bare", *names, *([DEFAULTS] if loader_differs else [])]
        counter = 0

        def one(name: str, cfg: dict[str, Any]) -> Measure:
            nonlocal counter
            counter += 1
            return measure(name, modules, cfg, tmp_dir / "runs" / f"{counter:03d}_{name}", steps_per_epoch)

        def drop(name: str, err: Exception) -> None:  # a routine that fails is reported, the others go on
            skipped[name] = f"failed: {type(err).__name__}: {err}".splitlines()[0][:200]
            variants.remove(name)
            names.remove(name)
            print(f"  {name}: {skipped[name]}", flush=True)

        if not args.no_warmup:  # first calls pay for lazy imports and kernel set-up: keep them out of the figures
            warm = copy.deepcopy(config)
            warm["DATASET_CONFIG"] = {**warm["DATASET_CONFIG"], "n_samples": min(args.samples, 2 * args.batch_size + 8)}
            warm["EPOCHS"] = 1
            for name in list(variants):
                try:
                    one(name, warm)
                except Exception as err:
                    if name == "bare":
                        raise
                    drop(name, err)
        runs: dict[str, list[Measure]] = {name: [] for name in variants}
        for round_index in range(args.rounds):
            for name in list(variants):
                try:
                    runs[name].append(one(name, config))
                except Exception as err:
                    if name == "bare":
                        raise
                    drop(name, err)
            bare = runs["bare"][-1]
            line = "  ".join(f"{n} {runs[n][-1].per_step / bare.per_step:.2f}" for n in names)
            print(
                f"  round {round_index + 1}/{args.rounds}: bare {bare.per_step:.4f} s/step; step ratios {line}",
                flush=True,
            )

    rows = report(["bare", *names], runs)
    print()
    print_table(rows)
    print()
    print_parts(names, runs, parts)
    print()
    wait_share = _median([m.data_wait / m.train_seconds for m in runs["bare"]])
    settings = ", ".join(f"{k}={v}" for k, v in project_loader_kwargs(config).items())
    print(
        f"bare loop: {100 * wait_share:.0f}% of its training time blocked in next(iter(loader)) with the project's "
        f"DataLoader settings ({settings})"
    )
    defaults_share = wait_share
    if loader_differs:
        defaults_share = _median([m.data_wait / m.train_seconds for m in runs[DEFAULTS]])
        step = _median([m.per_step for m in runs[DEFAULTS]])
        print(
            f"bare loop: {100 * defaults_share:.0f}% with torch's DataLoader defaults (batch_size only; "
            f"{step:.4f} s/step)"
        )
    else:
        print("  (torch's DataLoader defaults are the same settings but for batch_size)")
    if import_seconds:
        print("import, once per process: " + ", ".join(f"{n} {s:.2f} s" for n, s in import_seconds.items()))
    print(
        "s/step: seconds per training step (the training part of the epochs over the steps; median over rounds); "
        "step ratio: to the bare\nloop of the same round (median, then min-max); CPU: the same with this process's "
        "CPU seconds, which other work on a busy\nmachine inflates less; s/run, run ratio: the whole run (building, "
        "validation, records, checkpoints, plots included);\ns outside epochs: wall seconds a run spends outside "
        "its epochs (build, sanity checks, records, plots, checkpoints)."
    )
    print(f"total {time.perf_counter() - clock:.0f} s")
    if args.json is not None:
        payload = {
            "date": datetime.now().isoformat(timespec="seconds"),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "threads": THREADS,
            "steps_per_run": args.epochs * steps_per_epoch,
            "rows": rows,
            "data_wait_share": wait_share,
            "data_wait_share_torch_defaults": defaults_share,
            "import_seconds": import_seconds,
            "skipped": skipped,
            "runs": {n: [m.__dict__ for m in ms] for n, ms in runs.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
