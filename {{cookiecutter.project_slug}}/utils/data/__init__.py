"""Datasets and paired image/mask transforms for segmentation."""
