"""P1: does InfoBatch reach the full-schedule mIoU in fewer iterations?

Trains the CPU demo config on the CamVid set in ADE20K layout
(``../shared/data/camvid_ade150`` next to the repository, or ``--data-root``)
in five arms per seed, T = ``--baseline-iters``:

* ``baseline``: stock mmseg (``EncoderDecoder``, mmengine's
  ``InfiniteSampler``, no InfoBatchHook) for T iterations,
* ``infobatch-0.6T`` and ``infobatch-0.5T``: the demo config as it is
  (``prune_ratio=0.5``, ``delta=0.875``) for round(0.6 T) and round(0.5 T)
  iterations,
* ``plain-0.6T`` and ``plain-0.5T``: stock training for the same shortened
  schedules.

Every run has its own work dir ``OUT_DIR/seed<S>/<arm>``, and its PolyLR
schedule ends at its own ``max_iters`` (``param_scheduler.0.end``). It
validates every ``--val-interval`` iterations (default round(T / 10)) and
after its last iteration, so its log shows the first evaluated iteration
that reaches a target. A run that finished writes ``p1_finished.json`` into its
work dir; running the script again skips those runs and restarts unfinished
ones from iteration 0.

Afterwards ``tools/compare_runs.py`` compares, per seed, the baseline with
the other arms (target = the baseline's final mIoU - 0.3) and writes
``OUT_DIR/seed<S>/compare.json`` and ``compare.png``. The script then prints
the final mIoU per arm (mean and sample standard deviation over seeds), the
iteration at which each run first reached its seed's target, and per seed
whether ``infobatch-0.5T`` reaches the target while ``plain-0.5T`` does not.
The summary goes to ``OUT_DIR/p1_summary.json``.

Run from the repository root, e.g.:
    .venv/bin/python benchmarks/p1_convergence.py --baseline-iters 600 --dry-run
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import training_runs as runs

FINISHED_MARKER = 'p1_finished.json'
TARGET_TOLERANCE = 0.3
LOG_INTERVAL = 20


@dataclass(frozen=True)
class Arm:
    name: str
    infobatch: bool
    fraction: Fraction


ARMS = (
    Arm('baseline', False, Fraction(1)),
    Arm('infobatch-0.6T', True, Fraction(3, 5)),
    Arm('infobatch-0.5T', True, Fraction(1, 2)),
    Arm('plain-0.6T', False, Fraction(3, 5)),
    Arm('plain-0.5T', False, Fraction(1, 2)),
)
ARM_NAMES = tuple(arm.name for arm in ARMS)


@dataclass(frozen=True)
class Run:
    arm: Arm
    seed: int
    max_iters: int
    work_dir: Path


def arm_max_iters(arm: Arm, baseline_iters: int) -> int:
    """Return round(fraction x T), half up, at least 1."""
    return max(1, math.floor(arm.fraction * baseline_iters + Fraction(1, 2)))


def num_validations(max_iters: int, val_interval: int) -> int:
    """Validations of one run: every val_interval iterations and after the last."""
    return max_iters // val_interval + (1 if max_iters % val_interval else 0)


def cfg_options(run: Run, val_interval: int) -> list[str]:
    options = [
        f'train_cfg.max_iters={run.max_iters}',
        f'param_scheduler.0.end={run.max_iters}',
        f'train_cfg.val_interval={val_interval}',
        f'default_hooks.logger.interval={min(LOG_INTERVAL, val_interval)}',
        f'randomness.seed={run.seed}',
    ]
    if not run.arm.infobatch:
        options += list(runs.STOCK_OPTIONS)
    return options


def run_settings(run: Run, val_interval: int, data_root: Path) -> dict:
    """Settings a finished run must match to be reused."""
    return dict(arm=run.arm.name, seed=run.seed, max_iters=run.max_iters,
                val_interval=val_interval, data_root=str(data_root))


def read_marker(work_dir: Path) -> dict | None:
    path = work_dir / FINISHED_MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding='utf-8'))


def plan_runs(args, out_dir: Path) -> list[Run]:
    selected = [arm for arm in ARMS if arm.name in args.only]
    return [Run(arm, seed, arm_max_iters(arm, args.baseline_iters),
                out_dir / f'seed{seed}' / arm.name)
            for seed in args.seeds for arm in selected]


def estimate_seconds(runs_to_do: list[Run], args) -> float:
    total = 0.0
    for run in runs_to_do:
        total += args.startup_seconds
        total += run.max_iters * args.seconds_per_iter
        total += num_validations(run.max_iters, args.val_interval) * args.seconds_per_val
    return total


def describe_estimate(args) -> str:
    """Return the duration of the full suite (all arms, all seeds) in terms of T."""
    num_runs = len(ARMS) * len(args.seeds)
    seconds_per_t = float(sum(arm.fraction for arm in ARMS)) * len(args.seeds) \
        * args.seconds_per_iter
    validations = len(args.seeds) * sum(
        num_validations(arm_max_iters(arm, args.baseline_iters), args.val_interval)
        for arm in ARMS)
    fixed = validations * args.seconds_per_val + num_runs * args.startup_seconds
    return (f'full suite estimate ({num_runs} runs): {seconds_per_t:.2f} s x T training + '
            f'{validations} validations x {args.seconds_per_val:g} s + {num_runs} start-ups x '
            f'{args.startup_seconds:g} s = {seconds_per_t:.2f} x T + {fixed:.0f} s, here '
            f'{(seconds_per_t * args.baseline_iters + fixed) / 60:.1f} min')


def execute(run: Run, args, data_root: Path) -> bool:
    """Train one run and write its finish marker. Returns False on failure."""
    command = runs.train_command(run.work_dir, data_root, cfg_options(run, args.val_interval))
    log_path = run.work_dir / 'train_output.log'
    print(f'[seed {run.seed}] {run.arm.name}: {run.max_iters} iterations, load average '
          f'{runs.load_average()}', flush=True)
    status, wall_s = runs.run_logged(command, log_path)
    if status != 0:
        print(f'error: seed {run.seed} {run.arm.name} failed with exit status {status}; '
              f'last lines of {log_path}:\n{runs.log_tail(log_path)}', file=sys.stderr)
        return False
    marker = dict(run_settings(run, args.val_interval, data_root), wall_s=wall_s,
                  command=runs.format_command(command))
    (run.work_dir / FINISHED_MARKER).write_text(json.dumps(marker, indent=2) + '\n',
                                                encoding='utf-8')
    print(f'[seed {run.seed}] {run.arm.name}: finished in {wall_s:.0f} s', flush=True)
    return True


def sort_runs(planned: list[Run], args, data_root: Path) -> tuple[list[Run], list[Run]] | None:
    """Split planned runs into finished and to-do.

    Returns None if a finished run was made with other settings.
    """
    finished, to_do = [], []
    for run in planned:
        marker = read_marker(run.work_dir)
        expected = run_settings(run, args.val_interval, data_root)
        if marker is None:
            to_do.append(run)
        elif all(marker.get(key) == value for key, value in expected.items()):
            finished.append(run)
        else:
            print(f'error: {run.work_dir} holds a finished run with other settings '
                  f'({ {key: marker.get(key) for key in expected} }, expected {expected}); '
                  'use another --out-dir or delete that work dir', file=sys.stderr)
            return None
    return finished, to_do


# ------------------------------------------------------------------ report
def demo_batch_size() -> int:
    """Return the demo config's images per iteration (one process, no DDP)."""
    from mmengine.config import Config

    return int(Config.fromfile(str(runs.DEMO_CONFIG)).train_dataloader.batch_size)


def compare_seed(seed: int, out_dir: Path) -> dict | None:
    """Run compare_runs.py on one seed's finished runs and return its JSON.

    Returns None without a finished baseline or if compare_runs.py fails.
    """
    seed_dir = out_dir / f'seed{seed}'
    baseline_dir = seed_dir / 'baseline'
    if read_marker(baseline_dir) is None:
        print(f'seed {seed}: no finished baseline; skipped in the comparison')
        return None
    others = [arm.name for arm in ARMS[1:] if read_marker(seed_dir / arm.name) is not None]
    command = [sys.executable, str(runs.COMPARE_TOOL), '--baseline', str(baseline_dir),
               '--name', 'baseline']
    for name in others:
        command += ['--run', str(seed_dir / name), '--name', name]
    command += ['--tolerance', str(TARGET_TOLERANCE), '--batch-size', str(demo_batch_size()),
                '--json', str(seed_dir / 'compare.json'),
                '--plot', str(seed_dir / 'compare.png')]
    print(f'\n=== seed {seed}: {runs.format_command(command)}', flush=True)
    status = subprocess.run(command, cwd=runs.REPO_ROOT, check=False).returncode
    if status != 0:
        print(f'error: compare_runs.py failed for seed {seed} with exit status {status}',
              file=sys.stderr)
        return None
    return json.loads((seed_dir / 'compare.json').read_text(encoding='utf-8'))


def format_mean_std(values: list[float]) -> str:
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.2f} (1 seed)'
    return f'{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)} seeds)'


def aggregate(comparisons: dict[int, dict]) -> dict:
    """Collect final mIoU and target iterations per arm over seeds."""
    per_arm = {}
    for arm in ARMS:
        finals, reached = [], {}
        for seed, document in comparisons.items():
            row = next((row for row in document['runs'] if row['name'] == arm.name), None)
            if row is None or row.get('error'):
                continue
            if row['final_miou'] is not None:
                finals.append(row['final_miou'])
            reached[seed] = dict(reached_iter=row['reached_iter'], max_iter=row['max_iter'],
                                 best_miou=row['best_miou'])
        per_arm[arm.name] = dict(
            final_miou=finals,
            final_miou_mean=statistics.fmean(finals) if finals else None,
            final_miou_std=statistics.stdev(finals) if len(finals) > 1 else None,
            reached=reached)

    verdicts = {}
    for seed, document in comparisons.items():
        infobatch = per_arm['infobatch-0.5T']['reached'].get(seed)
        plain = per_arm['plain-0.5T']['reached'].get(seed)
        if infobatch is None or plain is None:
            continue
        verdicts[seed] = dict(
            target_miou=document['target_miou'],
            infobatch_reached=infobatch['reached_iter'] is not None,
            plain_reached=plain['reached_iter'] is not None,
            infobatch_only=(infobatch['reached_iter'] is not None
                            and plain['reached_iter'] is None))
    return dict(arms=per_arm, verdicts=verdicts)


def print_aggregate(summary: dict, seeds: list[int]) -> None:
    print('\n=== P1 aggregate')
    header = f'{"arm":<16} {"final mIoU, mean ± std":<30} target reached @ iteration'
    print(header)
    for name, values in summary['arms'].items():
        reached = []
        for seed in seeds:
            entry = values['reached'].get(seed)
            if entry is None:
                reached.append(f's{seed}: not run')
            elif entry['reached_iter'] is None:
                reached.append(f's{seed}: not reached')
            else:
                reached.append(f's{seed}: {entry["reached_iter"]}/{entry["max_iter"]}')
        print(f'{name:<16} {format_mean_std(values["final_miou"]):<30} {", ".join(reached)}')

    print()
    for seed, verdict in summary['verdicts'].items():
        print(f'seed {seed} (target {verdict["target_miou"]:.2f}): infobatch-0.5T '
              f'{"reached" if verdict["infobatch_reached"] else "did not reach"} it, '
              f'plain-0.5T {"reached" if verdict["plain_reached"] else "did not reach"} it')
    if summary['verdicts']:
        count = sum(verdict['infobatch_only'] for verdict in summary['verdicts'].values())
        print(f'infobatch-0.5T reaches the target while plain-0.5T does not in {count} of '
              f'{len(summary["verdicts"])} seeds')
    else:
        print('no seed has both 0.5T arms finished; no verdict')


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--baseline-iters', '-T', type=int, required=True, metavar='T',
                        help='iterations of the baseline. The short arms train 0.6 T '
                        'and 0.5 T')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='seeds to run (default: %(default)s)')
    parser.add_argument('--only', nargs='+', choices=ARM_NAMES, default=list(ARM_NAMES),
                        help='arms to run (default: all five)')

    parser.add_argument('--val-interval', type=int,
                        help='validate every this many iterations and after the last '
                        '(default: round(T / 10))')

    parser.add_argument('--data-root',
                        help='ADE20K-layout dataset (default: ../shared/data/camvid_ade150 '
                        'next to the repository)')
    parser.add_argument('--out-dir',
                        help='folder for all runs (default: work_dirs/benchmarks/p1_T<T>)')
    parser.add_argument('--torch-threads', type=int,
                        help='torch intra-op threads (OMP_NUM_THREADS) of every run '
                        '(default: torch default, one per CPU)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan, the commands and the estimated duration, then exit')

    estimate = parser.add_argument_group('duration estimate')
    # Defaults measured on 2 shared x86 cores at load average about 1. A busy
    # machine is several times slower.
    estimate.add_argument('--seconds-per-iter', type=float, default=0.45,
                          help='training seconds per iteration (default: %(default)s)')
    estimate.add_argument('--seconds-per-val', type=float, default=15.0,
                          help='seconds per validation pass (default: %(default)s)')
    estimate.add_argument('--startup-seconds', type=float, default=15.0,
                          help='seconds from process start to the first iteration and '
                          'after the last (default: %(default)s)')

    args = parser.parse_args(argv)
    if args.baseline_iters < 2:
        parser.error(f'--baseline-iters must be >= 2, got {args.baseline_iters}')
    if args.val_interval is None:
        args.val_interval = max(1, round(args.baseline_iters / 10))
    if args.val_interval < 1:
        parser.error(f'--val-interval must be >= 1, got {args.val_interval}')
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error(f'--torch-threads must be >= 1, got {args.torch_threads}')
    args.seeds = list(dict.fromkeys(args.seeds))
    args.only = list(dict.fromkeys(args.only))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.torch_threads is not None:
        os.environ['OMP_NUM_THREADS'] = str(args.torch_threads)
    out_dir = Path(args.out_dir or runs.REPO_ROOT / 'work_dirs' / 'benchmarks'
                   / f'p1_T{args.baseline_iters}').resolve()
    try:
        data_root = runs.resolve_data_root(args.data_root, allow_generated=False)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2

    planned = plan_runs(args, out_dir)
    sorted_runs = sort_runs(planned, args, data_root)
    if sorted_runs is None:
        return 1
    finished, to_do = sorted_runs

    print(f'data: {data_root}\noutput: {out_dir}\nT = {args.baseline_iters}, validation '
          f'every {args.val_interval} iterations, seeds {args.seeds}, load average '
          f'{runs.load_average()}')
    for run in planned:
        state = 'finished, skipped' if run in finished else 'to run'
        print(f'  seed {run.seed} {run.arm.name:<15} {run.max_iters:>6} iterations, '
              f'{num_validations(run.max_iters, args.val_interval)} validations: {state}')
    print(describe_estimate(args))
    print(f'expected duration of the {len(to_do)} runs to do: about '
          f'{estimate_seconds(to_do, args) / 60:.1f} min (an estimate from the '
          '--seconds-per-* values; load from other processes lengthens it)', flush=True)
    if args.dry_run:
        for run in to_do:
            command = runs.train_command(run.work_dir, data_root,
                                         cfg_options(run, args.val_interval))
            print(runs.format_command(command))
        return 0

    for run in to_do:
        if run.work_dir.exists():
            print(f'removing {run.work_dir}: an unfinished run (no {FINISHED_MARKER}); '
                  'it restarts from iteration 0')
            shutil.rmtree(run.work_dir)
        if not execute(run, args, data_root):
            return 1

    comparisons = {}
    for seed in args.seeds:
        document = compare_seed(seed, out_dir)
        if document is not None:
            comparisons[seed] = document
    summary = aggregate(comparisons)
    print_aggregate(summary, args.seeds)

    summary_path = out_dir / 'p1_summary.json'
    summary_document = dict(
        baseline_iters=args.baseline_iters, val_interval=args.val_interval,
        seeds=args.seeds, data_root=str(data_root), target_tolerance=TARGET_TOLERANCE,
        comparisons={str(seed): document for seed, document in comparisons.items()},
        arms={name: dict(values, reached={str(seed): entry
                                          for seed, entry in values['reached'].items()})
              for name, values in summary['arms'].items()},
        verdicts={str(seed): verdict for seed, verdict in summary['verdicts'].items()})
    summary_path.write_text(json.dumps(summary_document, indent=2) + '\n', encoding='utf-8')
    print(f'wrote {summary_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
