"""Forms: how a device computes the models fast, kept apart from what the models compute.

A model module (``mlx_rvc.models``) states the network in the reference's structure with plain
MLX operations. A *form* is a set of implementations of the same operations tuned for one kind
of device, chosen once per process from MLX's default device:

* ``cpu``: convolutions as shifted matrix products or FFT overlap-save, numpy kernels where
  MLX's CPU backend is single-threaded (HuBERT, RMVPE's U-Net and GRU, the text encoder's
  attention), decoding in pieces on two threads (:mod:`mlx_rvc.forms.cpu`).
* ``gpu``: MLX's native (cuDNN / Metal) convolutions, compiled element-wise chains, decoding in
  one pass or in pieces sized from the device's memory, no host round trips inside a model
  (:mod:`mlx_rvc.forms.gpu`). The same code serves CUDA and Metal.

``MLX_RVC_FORM=cpu|gpu`` (or :func:`force`) overrides the choice. The CPU form always computes on
MLX's CPU device (forcing it on a GPU machine moves the work there); the GPU form computes on
MLX's default device, which is the CPU where no GPU exists. The tests run every form, so the
GPU form is checked on MLX's CPU device too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..backend import mx
from ..errors import MlxRvcError

FORMS = ("cpu", "gpu")


class FormError(MlxRvcError, ValueError):
    """An unknown form name."""


def _check(name: str) -> str:
    name = name.strip().lower()
    if name not in FORMS:
        raise FormError(f"unknown form {name!r}: choose one of {', '.join(FORMS)}")
    return name


def _place(name: str):
    """Make MLX's CPU the default device for the CPU form; returns the device it replaced, if any."""
    if name == "cpu" and mx.default_device() != mx.cpu:
        old = mx.default_device()
        mx.set_default_device(mx.cpu)
        return old
    return None


_forced: str | None = _check(os.environ["MLX_RVC_FORM"]) if os.environ.get("MLX_RVC_FORM", "").strip() else None
if _forced is not None:
    _place(_forced)


def device_form() -> str:
    """The form that suits MLX's default device: ``cpu`` on the CPU, ``gpu`` on a GPU."""
    return "cpu" if mx.default_device() == mx.cpu else "gpu"


def active() -> str:
    """The form in use: the forced one (``MLX_RVC_FORM``, :func:`force`, :func:`use`), else the device's."""
    return _forced or device_form()


def is_cpu() -> bool:
    return active() == "cpu"


def force(name: str | None) -> None:
    """Use form ``name`` from now on, in this process and the ones it starts (``None``: the device's)."""
    global _forced
    _forced = None if name is None else _check(name)
    if _forced is not None:
        _place(_forced)
    if _forced is None:
        os.environ.pop("MLX_RVC_FORM", None)
    else:
        os.environ["MLX_RVC_FORM"] = _forced


@contextmanager
def use(name: str) -> Iterator[None]:
    """Run the block with form ``name`` (tests; benchmarks comparing forms)."""
    global _forced
    old = _forced
    _forced = _check(name)
    device = _place(_forced)
    try:
        yield
    finally:
        _forced = old
        if device is not None:
            mx.set_default_device(device)


def ops():
    """The active form's operations module (:mod:`.cpu` or :mod:`.gpu`; same functions in both)."""
    return cpu if is_cpu() else gpu


from . import cpu, gpu  # noqa: E402  (after the selection functions they may use)

__all__ = ["FORMS", "FormError", "active", "device_form", "force", "is_cpu", "ops", "use"]
