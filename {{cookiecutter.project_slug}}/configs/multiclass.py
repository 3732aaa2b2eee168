"""A multi-class, multi-band example: three classes on four-band synthetic images, offline.

``python train.py --config configs/multiclass.py``. A --config file names only what it changes; every other key
keeps its value from config/train_config.py. For your own data, swap the dataset for a folder:
``"DATASET": SegmentationFolder, "DATASET_CONFIG": {"root": "data/my_set"}`` with masks holding class indices
0..2 (or set MASK_VALUES for masks coded by value or colour), and name the classes in CLASSES.
"""

from utils.data.synthetic import SyntheticShapes

TRAIN_CONFIG = {
    "SESSION_NAME": "unet_shapes_multiclass",
    "TASK": "multiclass",
    # Channel 0 is the background; class 1 holds the circles and triangles, class 2 the rectangles.
    "CLASSES": ["background", "circle_triangle", "rectangle"],
    "MODEL_CONFIG": {"in_channels": 4, "out_channels": 3, "base_channels": 16, "depth": 3},
    "DATASET": SyntheticShapes,
    "DATASET_CONFIG": {"n_samples": 640, "size": 64, "channels": 4, "num_classes": 3, "seed": 0},
    "LOSS_CONFIG": {"class_weights": [0.5, 1.0, 1.0]},  # the background is most pixels: weigh it less
    "CHECKPOINT_METRIC": "val_dice",  # the mean over the three classes; or e.g. "val_dice_rectangle"
}
