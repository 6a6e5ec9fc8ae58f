"""``InfoBatchHook``: connects the InfoBatch sampler, segmentor and Runner."""
import logging
import math
from typing import Optional

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmseg.registry import HOOKS

from ..engine.checkpoint_loading import allow_mmengine_checkpoints
from ..samplers.infobatch_sampler import InfiniteInfoBatchSampler, SampledBatch
from ..segmentors.infobatch_segmentor import INDEX_KEY, WEIGHT_KEY, InfoBatchSegmentorMixin
from .iterator import ResumedDataloaderIterator
from .sync import check_consistency, gather_scores

__all__ = ['InfoBatchHook', 'CHECKPOINT_KEY']

#: Top-level checkpoint key of the InfoBatch state.
CHECKPOINT_KEY = 'infobatch'


@HOOKS.register_module()
class InfoBatchHook(Hook):
    """Drives InfoBatch pruning inside an mmengine iteration-based run.

    Per run (``before_train``): checks that the train DataLoader uses
    :class:`~mmib.samplers.InfiniteInfoBatchSampler` and the model an
    InfoBatch segmentor, and restores the sampler state on resume. Then it
    gives the sampler the per-rank batch size, the current iteration and
    ``max_iters``. A resumed run restarts the DataLoader iterator at the
    restored position, and mmengine's replay of trained batches loads no
    data.

    Per iteration: before the forward pass, it attaches to each
    ``SegDataSample`` the sampler index and loss weight bound to it when it
    was sampled (metainfo ``infobatch_index``, ``infobatch_weight``). After
    the pass, it gathers ``(index, score)`` pairs from all ranks in one
    all-gather and updates every rank's score table identically.

    Per virtual epoch: logs one line and ``infobatch/*`` scalars when its
    first batch is trained.

    Checkpoints carry the state under the top-level key ``infobatch``.

    Args:
        verify_sample_order (bool): Compare each image's ``img_path`` with the
            dataset entry of its sampler index and raise on a mismatch, which
            catches a DataLoader that reorders samples. Defaults to True.
        consistency_check_interval (int): Compare a checksum of the score
            table and plans across ranks every this many iterations and at
            every virtual-epoch boundary; 0 disables it. Only runs with more
            than one rank. Defaults to 100.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, verify_sample_order: bool = True,
                 consistency_check_interval: int = 100) -> None:
        if consistency_check_interval < 0:
            raise ValueError('consistency_check_interval must be >= 0, got '
                             f'{consistency_check_interval}')
        self.verify_sample_order = verify_sample_order
        self.consistency_check_interval = consistency_check_interval
        self._checkpoint_state: Optional[dict] = None
        self._checkpoint_loaded = False
        self._resume_context = None
        self._sampler: Optional[InfiniteInfoBatchSampler] = None
        self._last_reported_epoch = -1
        self._epoch_boundary_crossed = False
        self._num_nonfinite_scores = 0

    # ------------------------------------------------------------- run setup
    def before_run(self, runner) -> None:
        # The checkpoint of a resume is loaded between before_run and
        # before_train; allow mmengine's own checkpoint types for that window.
        self._resume_context = allow_mmengine_checkpoints()
        self._resume_context.__enter__()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._checkpoint_loaded = True
        self._checkpoint_state = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        self._close_resume_context()
        sampler = _train_sampler(runner)
        model = _unwrap(runner.model)
        if not isinstance(model, InfoBatchSegmentorMixin):
            raise TypeError(
                f'InfoBatchHook needs an InfoBatch segmentor but the model is '
                f"{type(model).__name__}; set model = dict(type='InfoBatchEncoderDecoder') "
                "(or 'InfoBatchCascadeEncoderDecoder' for cascade segmentors)")
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            raise TypeError(
                'InfoBatch needs an iteration-based run, got train loop '
                f"{type(runner.train_loop).__name__}; set train_cfg = "
                "dict(type='IterBasedTrainLoop', max_iters=...)")
        dataloader = runner.train_loop.dataloader
        batch_size = dataloader.batch_size
        if batch_size is None:
            raise ValueError(
                'InfoBatch needs the DataLoader batch_size; a custom batch_sampler '
                'is not supported with InfiniteInfoBatchSampler')

        self._restore_or_start(runner, sampler, batch_size)
        sampler.configure(batch_size, runner.iter, runner.max_iters)
        self._sampler = sampler
        self._last_reported_epoch = -1

        # A fresh run keeps mmengine's DataLoader iterator: what it already
        # sampled is the configured stream too, unless the annealing cut falls
        # inside it. A resumed run restarts the iterator at the restored
        # position and skips mmengine's replay of the trained batches.
        max_issued = sampler.max_issued_position
        cut_inside_issued = (sampler.prune_ratio > 0 and max_issued is not None
                             and max_issued >= sampler.stream.anneal_position)
        if runner.iter > 0 or cut_inside_issued:
            runner.train_loop.dataloader_iterator = ResumedDataloaderIterator(
                dataloader, num_replayed=runner.iter)

    def _restore_or_start(self, runner, sampler, batch_size: int) -> None:
        state = self._checkpoint_state
        self._checkpoint_state = None
        if runner.iter > 0 and state is not None:
            if state['trained_iters'] != runner.iter:
                raise ValueError(
                    f"InfoBatch state was saved after {state['trained_iters']} "
                    f'iterations but the run resumes at iteration {runner.iter}')
            sampler.load_state_dict(state['stream'])
            stream = sampler.stream
            num_scored = int(torch.isfinite(stream.scores).sum())
            plan = stream.plans[0] if stream.plans else None
            position = stream.consumed_position - plan.start + plan.offset if plan else 0
            epoch = plan.virtual_epoch if plan else stream.next_virtual_epoch
            runner.logger.info(
                f'InfoBatch restored: virtual epoch {epoch}, position {position} '
                f'of {plan.offset + plan.plan.num_planned if plan else 0} samples in it, '
                f'{num_scored}/{stream.num_samples} samples scored, '
                f'{len(stream.plans)} planned virtual epoch(s) kept, '
                f'global position {stream.consumed_position} samples. mmengine\'s '
                '"Advance dataloader" replay that follows is skipped: it loads no data')
            saved_per_iter = state.get('samples_per_iter')
            if saved_per_iter is not None and saved_per_iter != batch_size * sampler.world_size:
                runner.logger.warning(
                    f'InfoBatch checkpoint was trained with {saved_per_iter} samples per '
                    f'iteration; this run takes {batch_size * sampler.world_size} '
                    f'({batch_size} per rank x {sampler.world_size} ranks). The stream '
                    f'continues at global position {stream.consumed_position} and '
                    'pruning still stops at iteration ceil(delta * max_iters).')
            saved_read_ahead = state.get('read_ahead_batches')
            read_ahead = _read_ahead_batches(runner.train_loop.dataloader)
            if saved_read_ahead is not None and saved_read_ahead != read_ahead:
                runner.logger.warning(
                    f'InfoBatch checkpoint was trained with the DataLoader reading '
                    f'{saved_read_ahead} batches ahead (num_workers x prefetch_factor); '
                    f'this run reads {read_ahead}. Later virtual epochs are planned at '
                    'other moments, so the run continues correctly but not identically '
                    'to an uninterrupted one.')
        elif runner.iter > 0:
            stream = sampler.stream
            stream.consume(runner.iter * batch_size * sampler.world_size)
            runner.logger.warning(
                f'resumed at iteration {runner.iter} from a checkpoint without '
                'InfoBatch state: starting with no scores (the first virtual epoch '
                'is not pruned)')
        elif self._checkpoint_loaded:
            runner.logger.info(
                'InfoBatch starts fresh: load_from restores model weights only, '
                'not InfoBatch scores or position')
        self._checkpoint_loaded = False

    def after_run(self, runner) -> None:
        self._close_resume_context()

    def _close_resume_context(self) -> None:
        if self._resume_context is not None:
            self._resume_context.__exit__(None, None, None)
            self._resume_context = None

    # ------------------------------------------------------------- iteration
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        data_samples = data_batch['data_samples']
        batch = self._sampler.pop_batch(len(data_samples))
        if self.verify_sample_order:
            _verify_order(runner.train_loop.dataloader.dataset, batch, data_samples, runner.iter)
        for sample, index, weight in zip(data_samples, batch.indices.tolist(),
                                         batch.weights.tolist()):
            sample.set_metainfo({INDEX_KEY: index, WEIGHT_KEY: weight})
        self._report_new_epochs(runner, batch)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = _unwrap(runner.model)
        last = model.infobatch_last
        if last is None:
            raise RuntimeError('the InfoBatch segmentor produced no scores for this batch')
        model.infobatch_last = None

        indices, scores = gather_scores(last['indices'], last['scores'],
                                        capacity=self._sampler.batch_size)
        self._num_nonfinite_scores += self._sampler.stream.update_scores(indices, scores)

        interval = self.consistency_check_interval
        if interval and dist.get_world_size() > 1 and (
                self._epoch_boundary_crossed or (runner.iter + 1) % interval == 0):
            check_consistency(self._sampler.stream, runner.iter)
        self._epoch_boundary_crossed = False

    def _report_new_epochs(self, runner, batch: SampledBatch) -> None:
        stream = self._sampler.stream
        # Decide from the whole global batch so that every rank pops the same
        # summaries and runs the boundary consistency check at the same iteration.
        for epoch in batch.global_virtual_epochs.tolist():
            if epoch <= self._last_reported_epoch:
                continue
            summary = stream.summaries.pop(epoch, None)
            self._last_reported_epoch = epoch
            self._epoch_boundary_crossed = True
            if summary is None:
                continue
            summary['samples_seen'] = batch.start
            summary['nonfinite_scores_skipped'] = self._num_nonfinite_scores
            _log_summary(runner, summary)

    # ----------------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._sampler is None:
            return
        checkpoint[CHECKPOINT_KEY] = dict(
            trained_iters=checkpoint['meta']['iter'],
            samples_per_iter=self._sampler.samples_per_iter,
            read_ahead_batches=_read_ahead_batches(runner.train_loop.dataloader),
            stream=self._sampler.state_dict())


def _log_summary(runner, summary: dict) -> None:
    threshold = summary['threshold']
    threshold_text = 'none (no scores)' if math.isnan(threshold) else f'{threshold:.4f}'
    annealed = ' (annealing: no pruning)' if summary['annealed'] else ''
    full_planned = summary.get('full_planned', summary['num_planned'])
    cut = (f' (cut at the annealing boundary; the full pass had {full_planned}; '
           'pruned and kept fraction describe the full pass)'
           if full_planned != summary['num_planned'] else '')
    runner.logger.info(
        f"InfoBatch virtual epoch {summary['virtual_epoch']}{annealed}: "
        f"planned {summary['num_planned']} of {summary['num_samples']} samples{cut}, "
        f"scored {summary['num_scored']}, well-learned {summary['num_well_learned']}, "
        f"pruned {summary['num_pruned']}, threshold {threshold_text}, "
        f"weight {summary['well_learned_weight']:.4f}, "
        f"kept fraction {summary['kept_fraction']:.4f}, "
        f"cumulative pruned {summary['cumulative_pruned']}, "
        f"samples seen {summary['samples_seen']}"
        + (f", non-finite losses skipped so far {summary['nonfinite_scores_skipped']}"
           if summary['nonfinite_scores_skipped'] else ''))
    scalars = {f'infobatch/{key}': summary[key] for key in (
        'virtual_epoch', 'num_planned', 'num_scored', 'num_well_learned', 'num_pruned',
        'well_learned_weight', 'kept_fraction', 'cumulative_pruned', 'samples_seen')}
    if not math.isnan(threshold):
        scalars['infobatch/threshold'] = threshold
    runner.visualizer.add_scalars(scalars, step=runner.iter + 1)


def _read_ahead_batches(dataloader) -> int:
    """Return how many batches the DataLoader samples ahead of training."""
    if not dataloader.num_workers:
        return 0
    return dataloader.num_workers * (dataloader.prefetch_factor or 2)


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _train_sampler(runner) -> InfiniteInfoBatchSampler:
    dataloader = runner.train_loop.dataloader
    sampler = dataloader.sampler
    if not isinstance(sampler, InfiniteInfoBatchSampler):
        batch_sampler = getattr(dataloader, 'batch_sampler', None)
        sampler = getattr(batch_sampler, 'sampler', None)
    if not isinstance(sampler, InfiniteInfoBatchSampler):
        raise TypeError(
            'InfoBatchHook needs the train DataLoader to use InfiniteInfoBatchSampler, '
            f'got {type(dataloader.sampler).__name__}; set '
            "train_dataloader = dict(sampler=dict(type='InfiniteInfoBatchSampler'))")
    return sampler


def _verify_order(dataset, batch: SampledBatch, data_samples, iteration: int) -> None:
    for index, sample in zip(batch.indices.tolist(), data_samples):
        seen_path = sample.metainfo.get('img_path')
        if seen_path is None:
            return
        expected = dataset.get_data_info(index).get('img_path')
        if expected is not None and expected != seen_path:
            raise RuntimeError(
                f'InfoBatch sample order mismatch at iteration {iteration}: the sampler '
                f'issued index {index} ({expected}) but the model got {seen_path}. '
                'The DataLoader must keep sampler order (in_order=True).')
