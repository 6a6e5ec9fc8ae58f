"""The weights_only allow-list for mmengine checkpoints."""
import io
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mmib.engine import allow_mmengine_checkpoints
from mmib.engine.checkpoint_loading import _history_buffer_getattr


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_history_buffer_and_numpy_load():
    history = HistoryBuffer()
    history.update(1.5)
    history.update(2.5)
    obj = dict(buffer=history, array=np.arange(3), scalar=np.float64(0.25))
    with pytest.raises(pickle.UnpicklingError):
        _roundtrip(obj)
    with allow_mmengine_checkpoints():
        loaded = _roundtrip(obj)
    assert loaded['buffer'].mean() == pytest.approx(2.0)
    assert loaded['array'].tolist() == [0, 1, 2]
    assert loaded['scalar'] == 0.25


def test_getattr_stand_in_allows_public_methods_only():
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='__init__'):
        _history_buffer_getattr(HistoryBuffer, '__init__')
    with pytest.raises(pickle.UnpicklingError, match='dict'):
        _history_buffer_getattr({}, 'get')
    with pytest.raises(pickle.UnpicklingError):
        _history_buffer_getattr(HistoryBuffer, 'not_a_method')


class _Crafted:
    """Pickles as getattr(HistoryBuffer, '__init__'), a step towards its globals."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_crafted_getattr_rejected():
    buffer = io.BytesIO()
    torch.save({'x': _Crafted()}, buffer)
    buffer.seek(0)
    with allow_mmengine_checkpoints():
        with pytest.raises(pickle.UnpicklingError, match='__init__'):
            torch.load(buffer, weights_only=True)
