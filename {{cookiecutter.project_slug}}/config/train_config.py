"""TRAIN_CONFIG: the one experiment dict that every training routine takes; every key is here with its value.

Keys are UPPER_CASE; classes, functions and ``functools.partial`` objects are real Python objects and their keyword
arguments plain dicts, so a new model, dataset, optimizer or loss is one import away. A --config file may set only
the keys it changes: the others take their values from here. ``python train.py --help`` lists every key with its
meaning (config/schema.py); ``--set KEY=VALUE`` changes one from the command line (``--set OPTIMIZER_CONFIG.lr=1e-3``).
"""

from torch import nn, optim

from models.unet import UNet
from utils.data.synthetic import SyntheticShapes
from utils.data.transforms import RandomFlipRotate
from utils.losses import dice_ce
from utils.metrics import dice, iou

TRAIN_CONFIG = {
    "SESSION_NAME": "unet_shapes",
    "ROUTINE": "{{ cookiecutter.__default_routine }}",
    "SEED": 42,
    "DEVICE": "auto",
    # binary: one sigmoid channel (masks 0/1 or 0/255); multiclass: softmax over len(CLASSES) channels (masks hold
    # class indices 0..K-1, or values/colours mapped by MASK_VALUES); multilabel: K sigmoid channels (K-band masks).
    "TASK": "binary",
    "CLASSES": ["shape"],  # names, in output-channel order (binary: the foreground's); metrics per class
    "IGNORE_INDEX": None,  # multiclass: a mask value (e.g. 255) counted in neither loss nor metrics
    "MASK_VALUES": None,  # e.g. {0: 0, 128: 1, 255: 2} or {"255,0,0": 1}: mask value or colour -> class
    "MASK_THRESHOLD": None,  # binary/multilabel: values above it are set (None: > 0); 127 reads 0/255 JPEG masks
    "MODEL": UNet,
    "MODEL_CONFIG": {
        "in_channels": 1,
        "out_channels": 1,
        "base_channels": 16,
        "depth": 3,
        "upsampling": "pixel_shuffle",
        "dropout": 0.0,
        "activation": nn.ReLU,  # or functools.partial(nn.LeakyReLU, 0.1)
    },
    # Synthetic shapes are generated on the fly: the project trains out of the box, offline. For your own data:
    # "DATASET": SegmentationFolder (utils/data/folder.py), "DATASET_CONFIG": {"root": "data/my_set"}.
    "DATASET": SyntheticShapes,
    "DATASET_CONFIG": {"n_samples": 640, "size": 64, "seed": 0},
    "VAL_DATASET": None,  # a validation dataset of its own; None: VAL_FRACTION of DATASET, split with SEED
    "VAL_DATASET_CONFIG": {},
    "VAL_FRACTION": 0.2,
    "VAL_GROUPS": None,  # keeps a scene's tiles on one side: a regex on file stems (r"^(scene\d+)_") or a CSV
    "FOLDS": None,  # k-fold cross-validation: train.py --folds 5 trains 5 runs, each validating on its own fold
    "FOLD": None,  # the one fold to train (train.py --fold I, e.g. a cluster's array job); None: every fold
    "PATCH_SIZE": None,  # train on random square patches of this size (e.g. 256) from images of any size
    "PATCH_FOREGROUND": 0.0,  # share of patches centred on a labelled pixel (helps with rare classes)
    "NORMALIZATION": "meanstd",  # per-band statistics of the training set: meanstd | percentile | None | init
    "NODATA": None,  # an image value meaning "no data" (NaN always is): such pixels count in no loss or metric
    "TRAIN_TRANSFORM": RandomFlipRotate(),
    # num_workers 0: SyntheticShapes draws a batch in a few ms. Data read from disk and augmented wants workers
    # (e.g. 4); on CUDA the routines pin memory and copy batches without blocking.
    "DATA_LOADER_CONFIG": {"batch_size": 16, "num_workers": 0},
    "OPTIMIZER": optim.AdamW,
    "OPTIMIZER_CONFIG": {"lr": 3e-3, "weight_decay": 1e-4},
    "SCHEDULER": optim.lr_scheduler.CosineAnnealingLR,
    "SCHEDULER_CONFIG": {},  # T_max (the schedule's length) follows EPOCHS unless set here
    "ONE_CYCLE": None,  # e.g. {"max_lr": 1e-2}: the one-cycle policy instead of SCHEDULER (set SCHEDULER None)
    "LR_FIND": False,  # True: a learning-rate range test first (ignite, fastai routines)
    "LOSS": dice_ce,
    "LOSS_CONFIG": {},  # e.g. {"class_weights": [0.2, 1.0, 3.0]}
    "METRICS": {"dice": dice, "iou": iou},  # val_dice: the mean over images (empty ones skipped); val_dice_pooled
    "INIT_FROM": None,  # a checkpoint or run name whose weights start this run (train.py --init-from)
    "EPOCHS": 8,
    # GPU speed-ups, all off by default. MIXED_PRECISION: True (fp16 with loss scaling on CUDA, bf16 elsewhere),
    # "bf16" or "fp16" (CUDA only). CHANNELS_LAST: the NHWC memory layout that tensor cores prefer. COMPILE: True or
    # a dict of torch.compile kwargs, e.g. {"mode": "max-autotune"}; the first steps then take longer (compilation).
    "MIXED_PRECISION": False,
    "CHANNELS_LAST": False,
    "COMPILE": False,
    "GRAD_CLIP": 1.0,  # max gradient norm; None disables clipping
    "EARLY_STOPPING": {"patience": 5, "min_delta": 0.0},  # None trains every epoch
    "CHECKPOINT_METRIC": "val_dice",  # val_loss, val_<METRICS name>[_pooled | _<class>]: picks best.pt
    "CHECKPOINT_MODE": "max",  # None: min for losses, max for metrics
    "LOGFILE": True,
    "TEST_FOLDER": None,  # a labelled folder (images/, masks/) that tests/test_trained_model.py evaluates
    "QUALITY_FLOOR": {},  # e.g. {"dice": 0.8}: what that test asserts for the mean over the test images
    {%- if cookiecutter.use_tensorboard %}
    "TENSORBOARD": True,  # extensions/tensorboard.py
    {%- endif %}
    {%- if cookiecutter.use_smtp_notifications %}
    "NOTIFY": None,  # e-mail address(es) told when the run ends (extensions/notify.py; SMTP_* variables)
    {%- endif %}
    "COMMENT": "",
}
