"""Test-only hooks and optimizer wrapper for multi-process InfoBatch runs.

Configs load this module with ``custom_imports`` (the tests put ``tests/`` on
``PYTHONPATH``). Each rank writes ``probe_rank{rank}.json`` to the work dir
when training ends, holding:

* ``batches``: per iteration, the :class:`~mmib.samplers.SampledBatch` that
  ``InfoBatchHook`` popped (global start, indices, weights, virtual epochs),
  the indices the model saw in its data samples, and the model's per-image
  ``(index, score)`` pairs before they were gathered.
* ``plans``: every virtual-epoch plan the stream held when training started
  or made later (order, upweighted flags, weight, placement).
* ``score_bits``: the final score table as int32 bit patterns, so that
  tables compare exactly, NaN included.
"""
from contextlib import contextmanager
import json
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper

from mmseg.registry import HOOKS, OPTIM_WRAPPERS

from mmib.segmentors import INDEX_KEY

_RECORD = dict(batches={}, plans=[], meta={})


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _plan_record(scheduled) -> dict:
    plan = scheduled.plan
    return dict(virtual_epoch=scheduled.virtual_epoch, start=scheduled.start,
                annealed=scheduled.annealed, order=plan.order.tolist(),
                upweighted=plan.upweighted.tolist(),
                well_learned_weight=plan.well_learned_weight,
                num_samples=plan.num_samples, num_pruned=plan.num_pruned)


def _float_bits(values: torch.Tensor) -> list:
    return values.detach().float().contiguous().view(torch.int32).tolist()


@HOOKS.register_module()
class InfoBatchProbeHook(Hook):
    """Records what this rank trained on and writes it as JSON.

    Runs after ``InfoBatchHook`` (priority NORMAL). So ``before_train`` finds
    the sampler configured, and ``after_train_iter`` runs after the score
    update and the consistency check.

    Args:
        corrupt_rank (int, optional): Rank whose score table gets corrupted.
        corrupt_after_iter (int, optional): ``runner.iter`` after which every
            finite score of ``corrupt_rank`` is increased by 1.
    """

    priority = 'NORMAL'

    def __init__(self, corrupt_rank: Optional[int] = None,
                 corrupt_after_iter: Optional[int] = None) -> None:
        self.corrupt_rank = corrupt_rank
        self.corrupt_after_iter = corrupt_after_iter
        self._sampler = None

    def before_train(self, runner) -> None:
        sampler = runner.train_loop.dataloader.sampler
        stream = sampler.stream
        self._sampler = sampler
        _RECORD['meta'] = dict(rank=runner.rank, world_size=runner.world_size,
                               start_iter=runner.iter, max_iters=runner.max_iters,
                               num_samples=stream.num_samples,
                               batch_size=sampler.batch_size)
        # Plans made while the DataLoader iterator started are already there.
        _RECORD['plans'] += [_plan_record(s) for s in stream.plans]

        original_pop, original_plan_next = sampler.pop_batch, stream._plan_next

        def recording_pop(batch_size):
            batch = original_pop(batch_size)
            _RECORD['batches'][runner.iter] = dict(
                start=batch.start, indices=batch.indices.tolist(),
                weights=batch.weights.tolist(),
                virtual_epochs=batch.virtual_epochs.tolist())
            return batch

        def recording_plan_next():
            scheduled = original_plan_next()
            _RECORD['plans'].append(_plan_record(scheduled))
            return scheduled

        sampler.pop_batch = recording_pop
        stream._plan_next = recording_plan_next

        output = {}

        def record_dtype(module, inputs, result):
            output['dtype'] = str(result.dtype)

        _unwrap(runner.model).decode_head.conv_seg.register_forward_hook(record_dtype)
        _RECORD['decode_output'] = output

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        record = _RECORD['batches'][runner.iter]
        record['model_indices'] = [sample.metainfo[INDEX_KEY]
                                   for sample in data_batch['data_samples']]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.rank == self.corrupt_rank and runner.iter == self.corrupt_after_iter:
            scores = self._sampler.stream.scores
            finite = torch.isfinite(scores)
            scores[finite] += 1.0

    def after_train(self, runner) -> None:
        stream = self._sampler.stream
        result = dict(_RECORD['meta'],
                      batches=[dict(iter=i, **b) for i, b in sorted(_RECORD['batches'].items())],
                      plans=_RECORD['plans'],
                      score_bits=stream.scores.view(torch.int32).tolist(),
                      consumed_position=stream.consumed_position,
                      decode_output_dtype=_RECORD['decode_output'].get('dtype'))
        path = osp.join(runner.work_dir, f'probe_rank{runner.rank}.json')
        with open(path, 'w') as file:
            json.dump(result, file)


@HOOKS.register_module()
class InfoBatchScoreProbeHook(Hook):
    """Records the model's per-image ``(index, score)`` pairs of each batch.

    Runs before ``InfoBatchHook`` (priority HIGH), which clears them.
    """

    priority = 'HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        last = _unwrap(runner.model).infobatch_last
        record = _RECORD['batches'][runner.iter]
        record['scored_indices'] = last['indices'].tolist()
        record['scored_index_dtype'] = str(last['indices'].dtype)
        record['score_bits'] = _float_bits(last['scores'])


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs forward and loss under CPU autocast.

    mmengine 0.10.7's ``AmpOptimWrapper`` requires CUDA, so CPU-only tests
    use this wrapper in its place.

    Args:
        dtype (str): Autocast dtype, ``'bfloat16'`` or ``'float16'``.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
