"""Example experiment configs: each a --config file naming what it changes from config/train_config.py."""
