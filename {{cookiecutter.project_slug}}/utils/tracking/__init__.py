"""What a run writes for people to read: CSV logs, curves and TensorBoard events."""
