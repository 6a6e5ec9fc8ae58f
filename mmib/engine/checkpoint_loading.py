"""Loading mmengine checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True`` and rejects
any class that is not allow-listed. mmengine 0.10.7 calls ``torch.load``
without ``weights_only``, so resuming one of its own checkpoints fails: the
message hub stores ``HistoryBuffer`` objects holding numpy arrays and
their statistics methods (pickled through ``getattr``), and the meta stores
numpy scalars. :func:`allow_mmengine_checkpoints` allow-lists
exactly those types for the duration of a ``with`` block, leaving every other
``torch.load`` of the process as strict as before.
"""
from contextlib import contextmanager
import importlib
import pickle
from typing import List

import numpy as np
import torch

__all__ = ['mmengine_checkpoint_safe_globals', 'allow_mmengine_checkpoints']


def mmengine_checkpoint_safe_globals() -> List:
    """Return the non-tensor types found in mmengine 0.10.7 checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        _numpy_reconstruct(),
        _numpy_scalar(),
    ]
    # numpy >= 1.25 pickles dtypes by their class (numpy.dtypes.Float64DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed.extend(
            getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType'))
    return allowed


def _history_buffer_getattr(obj, name: str):
    """Stand-in for ``getattr`` that only returns public HistoryBuffer methods.

    A ``HistoryBuffer`` pickles its ``statistics_methods`` as
    ``getattr(HistoryBuffer, 'mean')`` and the like. Allowing the real ``getattr``
    would let a crafted checkpoint reach any attribute of any loaded object.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    method = getattr(HistoryBuffer, name, None) if isinstance(name, str) else None
    is_history_buffer = obj is HistoryBuffer or isinstance(obj, HistoryBuffer)
    if (not is_history_buffer or name.startswith('_')
            or not callable(method)):
        raise pickle.UnpicklingError(
            f'checkpoint asks for attribute {name!r} of {type(obj).__name__}; '
            'only public HistoryBuffer methods are allowed')
    return getattr(obj, name)


def _numpy_multiarray():
    # numpy 2 moved numpy.core to numpy._core; numpy 1.26 has a partial
    # numpy._core without multiarray.
    try:
        return importlib.import_module('numpy._core.multiarray')
    except ImportError:
        return importlib.import_module('numpy.core.multiarray')


def _numpy_reconstruct():
    return _numpy_multiarray()._reconstruct


def _numpy_scalar():
    return _numpy_multiarray().scalar


@contextmanager
def allow_mmengine_checkpoints():
    """Allow-list mmengine's checkpoint types for ``torch.load`` in this block.

    Does nothing on torch versions without ``torch.serialization.safe_globals``
    (before 2.5), where ``torch.load`` is not restricted by default.
    """
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:
        yield
        return
    with safe_globals(mmengine_checkpoint_safe_globals()):
        yield
