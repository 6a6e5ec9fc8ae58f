"""Estimate the InfoBatch max_iters that matches a baseline's epochs of data.

Inputs: the baseline schedule in training iterations, the global batch size in
images per iteration, the dataset size in samples, and the kept fraction of a
virtual epoch. The kept fraction is either measured (mean
``infobatch/kept_fraction`` of a short mmib run, ``--work-dir``) or expected
from the prune ratio.

Model. The baseline covers E = baseline_iters x batch / num_samples epochs.
During the first delta fraction of its T iterations, InfoBatch visits
kept x num_samples samples per virtual epoch, and each virtual epoch counts
as one full-data-equivalent epoch because the kept well-learned samples are
reweighted to keep the gradient unbiased. The last (1 - delta) fraction visits
all samples. Solving

    delta x T x batch / (kept x N) + (1 - delta) x T x batch / N = E

gives T = baseline_iters / (delta / kept + 1 - delta), so batch and N cancel.
T is rounded up to a multiple of --round-to iterations.

Output: the estimate, the expected saving in iterations (and images forwarded,
since the batch size is unchanged), ``--cfg-options`` for mmseg's
tools/train.py and a Python config snippet. ``--json`` also writes the numbers
to a file.

Exit status: 0 on success, 1 when --work-dir has no usable InfoBatch scalars,
2 for invalid arguments.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

# Run as a script, this file's folder is on sys.path, so the sibling module
# that reads and merges mmengine work dirs imports directly.
from compare_runs import (UnusableRunError, kept_fraction, load_run,
                          parse_float, positive_int)

VAL_INTERVAL_MULTIPLE = 100


class MeasurementError(Exception):
    """Raised when --work-dir has no usable kept fractions; gives the reason."""


@dataclass
class KeptFraction:
    """Kept fraction of a virtual epoch during the pruning phase."""

    value: float
    source: str


@dataclass
class SchedulePlan:
    """Estimated InfoBatch schedule. Iterations are training iterations."""

    baseline_iters: int
    batch_size: int
    num_samples: int
    prune_ratio: float
    delta: float
    well_learned_fraction: float
    kept_fraction: float
    kept_fraction_source: str
    baseline_epochs: float
    max_iters_unrounded: float
    max_iters: int
    pruning_iters: int
    virtual_epochs_pruning: float
    full_epochs_annealing: float
    equivalent_epochs: float
    iteration_saving_pct: float
    baseline_val_interval: int
    val_interval: int
    baseline_num_evaluations: int
    num_evaluations: int
    cfg_options: str


def expected_kept_fraction(prune_ratio: float,
                           well_learned_fraction: float) -> KeptFraction:
    value = 1.0 - prune_ratio * well_learned_fraction
    return KeptFraction(
        value=value,
        source=(f'expected: 1 - prune ratio {prune_ratio:g} x well-learned '
                f'fraction {well_learned_fraction:g}'))


def measure_kept_fraction(work_dir: Path) -> KeptFraction:
    """Average the kept fraction over the virtual epochs that pruned.

    Virtual epochs with a kept fraction of 1 pruned nothing: the first one,
    before losses exist, and those in the annealing phase. The model covers
    annealing separately, so these epochs are excluded from the mean.
    Raises MeasurementError when no virtual epoch pruned.
    """
    try:
        run = load_run(work_dir, 'measured')
    except (UnusableRunError, OSError) as error:
        raise MeasurementError(f'--work-dir {work_dir}: {error}') from error

    fractions = []
    for step in sorted(run.infobatch):
        value = kept_fraction(run.infobatch[step])
        if value is None:
            continue
        if not 0 < value <= 1:
            raise MeasurementError(
                f'--work-dir {work_dir}: kept fraction {value:g} at iteration '
                f'{step} is outside (0, 1]; check the logged infobatch/ '
                'scalars')
        fractions.append(value)

    if not fractions:
        raise MeasurementError(
            f'--work-dir {work_dir}: no infobatch/kept_fraction or '
            'infobatch/num_planned and infobatch/num_pruned scalars; use a '
            'run trained with mmib InfoBatch, or drop --work-dir to use the '
            'expected kept fraction')
    pruning = [value for value in fractions if value < 1]
    if not pruning:
        raise MeasurementError(
            f'--work-dir {work_dir}: none of its {len(fractions)} virtual '
            'epochs pruned any sample; train it for more virtual epochs, or '
            'drop --work-dir to use the expected kept fraction')

    mean = sum(pruning) / len(pruning)
    excluded = len(fractions) - len(pruning)
    return KeptFraction(
        value=mean,
        source=(f'measured: mean over {len(pruning)} virtual epochs in '
                f'{work_dir}, excluding {excluded} that pruned nothing'))


def anneal_start_iter(delta: float, max_iters: int) -> int:
    """Return the first iteration without pruning, ceil(delta x max_iters).

    Uses the rule of mmib.core.anneal_start_iter: the decimal value of delta,
    so float error cannot round up by one.
    """
    return math.ceil(Fraction(repr(float(delta))) * max_iters)


def round_up(value: float, multiple: int) -> int:
    # The slack keeps float error in an exact result such as 8000.000000001
    # from adding a whole multiple.
    return int(math.ceil(value / multiple - 1e-9)) * multiple


def round_half_up(value: float, multiple: int) -> int:
    return int(math.floor(value / multiple + 0.5)) * multiple


def count_evaluations(max_iters: int, val_interval: int) -> int:
    """Count evaluations of mmengine's IterBasedTrainLoop.

    It evaluates every val_interval iterations and after the last iteration.
    """
    return math.ceil(max_iters / val_interval)


def format_cfg_options(max_iters: int, val_interval: int) -> str:
    return (f'--cfg-options train_cfg.max_iters={max_iters} '
            f'param_scheduler.0.end={max_iters} '
            f'train_cfg.val_interval={val_interval}')


def plan_schedule(args: argparse.Namespace,
                  kept_estimate: KeptFraction) -> SchedulePlan:
    baseline_epochs = args.baseline_iters * args.batch_size / args.num_samples
    kept = kept_estimate.value
    unrounded = args.baseline_iters / (args.delta / kept + 1 - args.delta)
    max_iters = round_up(unrounded, args.round_to)

    images_per_epoch = args.num_samples / args.batch_size
    pruning_iters = anneal_start_iter(args.delta, max_iters)
    virtual_epochs = pruning_iters / (kept * images_per_epoch)
    annealing_epochs = (max_iters - pruning_iters) / images_per_epoch

    val_interval = max(VAL_INTERVAL_MULTIPLE, round_half_up(
        max_iters * args.baseline_val_interval / args.baseline_iters,
        VAL_INTERVAL_MULTIPLE))

    return SchedulePlan(
        baseline_iters=args.baseline_iters,
        batch_size=args.batch_size,
        num_samples=args.num_samples,
        prune_ratio=args.prune_ratio,
        delta=args.delta,
        well_learned_fraction=args.well_learned_fraction,
        kept_fraction=kept,
        kept_fraction_source=kept_estimate.source,
        baseline_epochs=baseline_epochs,
        max_iters_unrounded=unrounded,
        max_iters=max_iters,
        pruning_iters=pruning_iters,
        virtual_epochs_pruning=virtual_epochs,
        full_epochs_annealing=annealing_epochs,
        equivalent_epochs=virtual_epochs + annealing_epochs,
        iteration_saving_pct=(args.baseline_iters - max_iters)
        / args.baseline_iters * 100,
        baseline_val_interval=args.baseline_val_interval,
        val_interval=val_interval,
        baseline_num_evaluations=count_evaluations(
            args.baseline_iters, args.baseline_val_interval),
        num_evaluations=count_evaluations(max_iters, val_interval),
        cfg_options=format_cfg_options(max_iters, val_interval))


def format_config_snippet(plan: SchedulePlan) -> str:
    return f"""\
_base_ = ['path/to/baseline_config.py']
train_cfg = dict(max_iters={plan.max_iters}, val_interval={plan.val_interval})
# mmengine replaces inherited lists whole, so restate the scheduler. These are
# the PolyLR settings of mmseg 1.x configs/_base_/schedules; copy your
# baseline's values if they differ.
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
         end={plan.max_iters}, by_epoch=False)
]"""


def format_report(plan: SchedulePlan) -> str:
    lines = [
        f'baseline: {plan.baseline_iters} iterations x {plan.batch_size} '
        f'images = {plan.baseline_epochs:.2f} epochs of {plan.num_samples} '
        'samples',
        f'kept fraction per pruning virtual epoch: {plan.kept_fraction:.4f} '
        f'({plan.kept_fraction_source})',
        f'InfoBatch max_iters: {plan.max_iters} (estimate; '
        f'{plan.max_iters_unrounded:.1f} before rounding up)',
        f'  iterations 0-{plan.pruning_iters} prune (delta {plan.delta:g}): '
        f'{plan.virtual_epochs_pruning:.2f} virtual epochs',
        f'  iterations {plan.pruning_iters}-{plan.max_iters} use all samples: '
        f'{plan.full_epochs_annealing:.2f} epochs',
        f'  full-data-equivalent epochs: {plan.equivalent_epochs:.2f} '
        f'(baseline {plan.baseline_epochs:.2f})',
        f'expected saving vs baseline: {plan.iteration_saving_pct:.1f}% of '
        'iterations and of images forwarded',
        f'val_interval: {plan.val_interval} (baseline '
        f'{plan.baseline_val_interval}), {plan.num_evaluations} evaluations '
        f'(baseline {plan.baseline_num_evaluations})',
        '',
        'Append to the tools/train.py command:',
        f'  {plan.cfg_options}',
        'param_scheduler.0 assumes a single scheduler, as in mmseg\'s '
        'schedule configs; with warmup, set end of the last scheduler instead.',
        '',
        'Or in a config that inherits from the baseline config:',
        format_config_snippet(plan),
    ]
    return '\n'.join(lines)


def parse_prune_ratio(text: str) -> float:
    value = parse_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1), got {text}')
    return value


def parse_delta(text: str) -> float:
    value = parse_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'must be in (0, 1], got {text}')
    return value


def parse_unit_fraction(text: str) -> float:
    value = parse_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--baseline-iters', type=positive_int, required=True,
                        help='max_iters of the baseline, in training '
                        'iterations')
    parser.add_argument('--batch-size', type=positive_int, required=True,
                        help='global batch size in images per iteration '
                        '(per-GPU batch size x number of GPUs)')
    parser.add_argument('--num-samples', type=positive_int, required=True,
                        help='number of samples in the training set')

    parser.add_argument('--prune-ratio', type=parse_prune_ratio, default=0.5,
                        help='fraction of the well-learned samples pruned from '
                        'each virtual epoch, in [0, 1) (default: %(default)s). '
                        'Ignored with --work-dir')
    parser.add_argument('--delta', type=parse_delta, default=0.875,
                        help='fraction of max_iters during which InfoBatch '
                        'prunes, in (0, 1]; the rest uses all samples '
                        '(default: %(default)s)')
    parser.add_argument('--well-learned-fraction', type=parse_unit_fraction,
                        default=0.5,
                        help='expected fraction of samples whose loss is below '
                        'the mean, in [0, 1] (default: %(default)s). Loss '
                        'distributions are usually right-skewed, so the true '
                        'value is often above 0.5; prefer --work-dir. '
                        'Ignored with --work-dir')

    parser.add_argument('--work-dir', type=Path, metavar='WORK_DIR',
                        help='work dir of a short mmib InfoBatch run. The mean '
                        'infobatch/kept_fraction of its virtual epochs that '
                        'pruned replaces the expected kept fraction. Assumes '
                        'the planned run uses the same prune ratio as that run')

    parser.add_argument('--baseline-val-interval', type=positive_int,
                        default=8000,
                        help='val_interval of the baseline in iterations; the '
                        'plan keeps about as many evaluations (default: '
                        '%(default)s)')
    parser.add_argument('--round-to', type=positive_int, default=100,
                        help='round max_iters up to a multiple of this many '
                        'iterations; 1 disables rounding (default: '
                        '%(default)s)')

    parser.add_argument('--json', type=Path, metavar='FILE',
                        help='file to write the plan to as JSON')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.work_dir is None:
        kept_estimate = expected_kept_fraction(args.prune_ratio,
                                               args.well_learned_fraction)
    else:
        try:
            kept_estimate = measure_kept_fraction(args.work_dir)
        except MeasurementError as error:
            print(f'error: {error}', file=sys.stderr)
            return 1

    plan = plan_schedule(args, kept_estimate)
    print(format_report(plan))

    if args.json is not None:
        try:
            args.json.write_text(json.dumps(asdict(plan), indent=2) + '\n',
                                 encoding='utf-8')
        except OSError as error:
            print(f'error: cannot write --json {args.json}: {error}',
                  file=sys.stderr)
            return 1
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
