"""Pick the device a run uses: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""

import torch


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine."""


def get_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``, or raise DeviceError saying why it cannot be used.

    ``auto`` prefers CUDA, then Apple's MPS, then the CPU.
    """
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available on this machine (torch "
                f"{torch.__version__}); use DEVICE='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {name!r} requested but this machine has {count} CUDA device(s): use cuda:0 to cuda:{count - 1}"
            )
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(
                f"device {name!r} requested but Apple MPS is not available on this machine; use DEVICE='cpu' or 'auto'"
            )
        return device
    raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
