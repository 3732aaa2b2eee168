"""Helpers used by training, prediction and the tests."""
