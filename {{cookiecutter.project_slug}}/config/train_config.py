"""TRAIN_CONFIG: the one experiment dict that every training routine takes.

Keys are UPPER_CASE; classes and functions are real Python objects and their keyword arguments plain dicts, so a
new model, dataset, optimizer or loss is one import away. ``python train.py --help`` lists every key with its
meaning; ``--set KEY=VALUE`` changes one from the command line (``--set OPTIMIZER_CONFIG.lr=1e-3``).
"""

from torch import nn, optim

from models.unet import UNet
from utils.data.datasets import SyntheticShapes
from utils.data.transforms import RandomFlipRotate
from utils.loss import dice, dice_bce, iou

TRAIN_CONFIG = {
    "SESSION_NAME": "unet_shapes",
    "ROUTINE": "{{ cookiecutter.__default_routine }}",
    "SEED": 42,
    "DEVICE": "auto",
    "MODEL": UNet,
    "MODEL_CONFIG": {
        "ch_in": 1,
        "ch_out": 1,
        "bulk_ch": 16,
        "n_recursions": 3,
        "use_shuffle": True,
        "dropout": 0.0,
        "activ": nn.ReLU,
    },
    # Synthetic shapes are generated on the fly: the project trains out of the box, offline.
    # For your own data: "DATASET": SegmentationFolder, "DATASET_CONFIG": {"root": "data/my_set"}.
    "DATASET": SyntheticShapes,
    "DATASET_CONFIG": {"n_samples": 640, "size": 64, "seed": 0},
    "VAL_FRACTION": 0.2,
    "TRAIN_TRANSFORM": RandomFlipRotate(),
    # num_workers 0: SyntheticShapes draws a batch in a few ms. Data read from disk and augmented wants workers
    # (e.g. 4); on CUDA the routines pin memory and copy batches without blocking.
    "DATA_LOADER_CONFIG": {"batch_size": 16, "num_workers": 0},
    "OPTIMIZER": optim.AdamW,
    "OPTIMIZER_CONFIG": {"lr": 3e-3, "weight_decay": 1e-4},
    "SCHEDULER": optim.lr_scheduler.CosineAnnealingLR,
    "SCHEDULER_CONFIG": {"T_max": 8},
    "LOSS": dice_bce,
    "METRICS": {"dice": dice, "iou": iou},
    "EPOCHS": 8,
    # GPU speed-ups, all off by default. MIXED_PRECISION: True (fp16 with loss scaling on CUDA, bf16 elsewhere),
    # "bf16" or "fp16" (CUDA only). CHANNELS_LAST: the NHWC memory layout that tensor cores prefer. COMPILE: True or
    # a dict of torch.compile kwargs, e.g. {"mode": "max-autotune"}; the first steps then take longer (compilation).
    "MIXED_PRECISION": False,
    "CHANNELS_LAST": False,
    "COMPILE": False,
    "GRAD_CLIP": 1.0,
    "EARLY_STOPPING": {"patience": 5, "min_delta": 0.0},
    "CHECKPOINT_METRIC": "val_dice",
    "CHECKPOINT_MODE": "max",
    "TENSORBOARD": {{ cookiecutter.use_tensorboard }},
    "LOGFILE": True,
    "NOTIFY": None,
    "COMMENT": "",
}
