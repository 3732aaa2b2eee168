"""Training routines: each module exposes ``train(config, global_config, resume=None) -> RunResult``."""
