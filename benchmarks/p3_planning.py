"""P3: time, peak memory and checkpoint state of planning one virtual epoch.

Compares ``mmib.core.plan_virtual_epoch`` (torch) with a plain NumPy and
Python-list implementation of the InfoBatch planning rule, written here for
the comparison:

* threshold = mean of a NumPy float32 score array,
* well-learned = indices strictly below the threshold,
* the kept well-learned subset = ``RandomState.choice(well_idx, k,
  replace=False)`` with ``k = m - floor(prune_ratio * m)`` of the ``m``
  well-learned samples,
* the visiting order is a Python list (other indices, then the kept subset)
  shuffled in place with ``RandomState.shuffle``,
* the loss weights are a per-sample float64 NumPy array, 1 except the kept
  well-learned samples.

Both sides get the same scores, all finite, drawn from a Gamma(2, 1)
distribution, so about 59% of the samples lie below the mean. Both plan the
same number of samples (checked).

Measured per dataset size:

* seconds per plan, median over repeats. Ours and the reference alternate
  (one of each per round), so load from other processes falls on both,
* peak memory above the resident size before planning, each plan in a fresh
  subprocess: the kernel's high-water mark (VmHWM, reset through
  /proc/self/clear_refs) minus VmRSS before the call. glibc is set to
  serve every allocation above 64 KiB with mmap, so freed arrays leave the
  resident set and cannot hide a later peak. This counts torch tensors,
  which tracemalloc does not see,
* for the reference also the tracemalloc peak and retained bytes, which
  count NumPy arrays and Python objects,
* bytes per sample of the tensors in ``PrunedStream.state_dict()`` (the
  InfoBatch part of a checkpoint) with one plan held and with two plans held
  (right after the next virtual epoch was planned, while the current one is
  still being trained), plus the ``torch.save`` size of the whole state.

Run from the repository root:
    .venv/bin/python benchmarks/p3_planning.py [--json FILE]
"""
import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmib.core import PrunedStream, plan_virtual_epoch  # noqa: E402

DEFAULT_SIZES = (20_210, 1_280_000, 10_000_000)
GOAL_SPEEDUP = 10.0
GOAL_SECONDS = 0.3
GOAL_STATE_BYTES_PER_SAMPLE = 12.0
# Allocations above this size go to mmap in the memory probe (glibc option).
PROBE_MMAP_THRESHOLD = 65536


def make_scores(num_samples: int, seed: int) -> np.ndarray:
    """Return float32 per-sample losses drawn from Gamma(shape 2, scale 1)."""
    return np.random.default_rng(seed).gamma(2.0, 1.0, num_samples).astype(np.float32)


def reference_plan(scores: np.ndarray, prune_ratio: float,
                   rng: np.random.RandomState):
    """Plan one virtual epoch with NumPy arrays and a Python list.

    Returns the visiting order (Python list of ints) and the per-sample
    weights (float64 array).
    """
    below_mean = scores < scores.mean()
    well_idx = np.where(below_mean)[0]
    order = np.where(~below_mean)[0].tolist()

    num_well = len(well_idx)
    num_kept_well = num_well - math.floor(prune_ratio * num_well)
    kept_well = rng.choice(well_idx, num_kept_well, replace=False)

    weights = np.ones(len(scores))
    if num_kept_well > 0:
        weights[kept_well] = num_well / num_kept_well
    order.extend(kept_well.tolist())
    rng.shuffle(order)
    return order, weights


def ours_plan(scores: torch.Tensor, prune_ratio: float,
              generator: torch.Generator):
    return plan_virtual_epoch(scores, prune_ratio, generator, shuffle=True)


# ------------------------------------------------------------------ timing
def time_call(function) -> tuple:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def time_size(num_samples: int, prune_ratio: float, repeats: int,
              reference_repeats: int, seed: int) -> dict:
    """Time both implementations, interleaved, and check they plan alike."""
    scores_np = make_scores(num_samples, seed)
    scores_torch = torch.from_numpy(scores_np.copy())
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)

    # One untimed call each loads code paths and allocator pools.
    plan = ours_plan(scores_torch, prune_ratio, generator)
    order, _ = reference_plan(scores_np, prune_ratio, rng)
    if plan.num_planned != len(order):
        raise RuntimeError(
            f'N={num_samples}: ours plans {plan.num_planned} samples but the '
            f'reference plans {len(order)}; the two no longer implement the '
            'same rule')
    num_planned = plan.num_planned
    del plan, order

    ours_seconds, reference_seconds = [], []
    for round_index in range(max(repeats, reference_repeats)):
        # Alternate which side goes first so that neither always follows the
        # other's freed memory.
        sides = ['ours', 'reference']
        if round_index % 2:
            sides.reverse()
        for side in sides:
            if side == 'ours' and round_index < repeats:
                seconds, _ = time_call(
                    lambda: ours_plan(scores_torch, prune_ratio, generator))
                ours_seconds.append(seconds)
            elif side == 'reference' and round_index < reference_repeats:
                seconds, _ = time_call(
                    lambda: reference_plan(scores_np, prune_ratio, rng))
                reference_seconds.append(seconds)

    ours_median = statistics.median(ours_seconds)
    reference_median = statistics.median(reference_seconds)
    return dict(
        num_samples=num_samples,
        num_planned=num_planned,
        ours_seconds=ours_seconds,
        reference_seconds=reference_seconds,
        ours_median_s=ours_median,
        reference_median_s=reference_median,
        speedup=reference_median / ours_median)


# ------------------------------------------------------------------ memory
def read_status_kib(field: str) -> int:
    with open('/proc/self/status', encoding='ascii') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not found in /proc/self/status')


def probe_memory(side: str, num_samples: int, prune_ratio: float,
                 seed: int) -> dict:
    """Measure one plan's peak memory. Runs inside a fresh subprocess."""
    scores_np = make_scores(num_samples, seed)
    scores_torch = torch.from_numpy(scores_np.copy())
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)

    # Plan a small dataset first so that one-time allocations (thread pools,
    # code paths) are not counted.
    warm_up_scores = make_scores(1000, seed)
    ours_plan(torch.from_numpy(warm_up_scores), prune_ratio, torch.Generator())
    reference_plan(warm_up_scores, prune_ratio, np.random.RandomState(seed))

    with open('/proc/self/clear_refs', 'w', encoding='ascii') as clear_refs:
        clear_refs.write('5')  # reset VmHWM to the current VmRSS
    rss_before = read_status_kib('VmRSS')
    if side == 'ours':
        plan = ours_plan(scores_torch, prune_ratio, generator)
        retained = plan.order.nbytes + plan.upweighted.nbytes
    else:
        order, weights = reference_plan(scores_np, prune_ratio, rng)
        retained = None
    peak_kib = read_status_kib('VmHWM') - rss_before
    result = dict(side=side, num_samples=num_samples,
                  peak_rss_bytes=peak_kib * 1024, retained_bytes=retained)

    if side == 'reference':
        del order, weights
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        kept = reference_plan(scores_np, prune_ratio, rng)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result['tracemalloc_peak_bytes'] = peak - baseline
        result['retained_bytes'] = current - baseline
        del kept
    return result


def measure_memory(side: str, num_samples: int, prune_ratio: float,
                   seed: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(PROBE_MMAP_THRESHOLD))
    command = [sys.executable, os.path.abspath(__file__), '--memory-probe',
               side, str(num_samples), '--prune-ratio', str(prune_ratio),
               '--seed', str(seed), '--threads', str(torch.get_num_threads())]
    completed = subprocess.run(command, env=env, capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f'memory probe {side} N={num_samples} failed with exit status '
            f'{completed.returncode}:\n{completed.stderr}')
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------- state
def tensor_bytes(value) -> int:
    """Sum the bytes of all tensors in a nested dict/list state."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(item) for item in value)
    return 0


def serialized_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def measure_state(num_samples: int, prune_ratio: float, seed: int) -> dict:
    """Bytes per sample in ``PrunedStream.state_dict()`` with 1 and 2 plans."""
    samples_per_iter = 16
    stream = PrunedStream(num_samples, prune_ratio, delta=1.0, seed=seed)
    stream.scores = torch.from_numpy(make_scores(num_samples, seed))
    stream.set_clock(0, max_iters=10 ** 12, samples_per_iter=samples_per_iter)

    stream.take(0, samples_per_iter)
    one_plan = stream.state_dict()
    plan_length = stream.plans[0].plan.num_planned

    # A batch that straddles the end of the first plan makes the second one
    # while the first is not yet consumed.
    stream.consume(plan_length - samples_per_iter // 2)
    stream.take(plan_length - samples_per_iter // 2,
                plan_length + samples_per_iter // 2)
    two_plans = stream.state_dict()
    if len(two_plans['plans']) != 2:
        raise RuntimeError(f'expected 2 plans in the state, got {len(two_plans["plans"])}')

    return dict(
        num_samples=num_samples,
        planned_fraction=plan_length / num_samples,
        one_plan_tensor_bytes=tensor_bytes(one_plan),
        two_plans_tensor_bytes=tensor_bytes(two_plans),
        one_plan_bytes_per_sample=tensor_bytes(one_plan) / num_samples,
        two_plans_bytes_per_sample=tensor_bytes(two_plans) / num_samples,
        one_plan_saved_bytes=serialized_bytes(one_plan),
        two_plans_saved_bytes=serialized_bytes(two_plans),
        # Without pruning (annealing, or prune_ratio 0) each plan visits every
        # sample: 4 B score + 4 B order + 1 B flag per plan position. A
        # checkpoint keeps only untrained positions, and the next plan exists
        # only once sampling reaches it, at most the DataLoader's read-ahead
        # before the current one ends, so about N positions are held.
        two_full_plans_bytes_per_sample_bound=4 + (4 + 1))


# ----------------------------------------------------------------- report
def describe_machine() -> str:
    load = ', '.join(f'{value:.2f}' for value in os.getloadavg())
    return (f'{platform.processor() or platform.machine()}, '
            f'{os.cpu_count()} logical CPUs, torch {torch.__version__} '
            f'({torch.get_num_threads()} intra-op threads), numpy '
            f'{np.__version__}, Python {platform.python_version()}; '
            f'load average {load}')


def format_bytes(value: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(value) < 1024 or unit == 'GiB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1024
    raise AssertionError('unreachable')


def print_report(timings, memory, states) -> None:
    print()
    print('N            ours median s  reference median s  reference/ours  '
          'repeats (ours/ref)')
    for row in timings:
        print(f'{row["num_samples"]:<12d} {row["ours_median_s"]:<14.4f} '
              f'{row["reference_median_s"]:<19.4f} {row["speedup"]:<15.1f} '
              f'{len(row["ours_seconds"])}/{len(row["reference_seconds"])}')

    if memory:
        print()
        print('N            ours peak RSS  ref peak RSS  ref tracemalloc peak  '
              'ours plan bytes  ref retained (tracemalloc)')
    for num_samples in sorted({row['num_samples'] for row in memory}):
        ours = next(row for row in memory
                    if row['num_samples'] == num_samples and row['side'] == 'ours')
        reference = next(row for row in memory if row['num_samples'] == num_samples
                         and row['side'] == 'reference')
        print(f'{num_samples:<12d} {format_bytes(ours["peak_rss_bytes"]):<14} '
              f'{format_bytes(reference["peak_rss_bytes"]):<13} '
              f'{format_bytes(reference["tracemalloc_peak_bytes"]):<21} '
              f'{format_bytes(ours["retained_bytes"]):<16} '
              f'{format_bytes(reference["retained_bytes"])}')

    print()
    print('N            planned/N  state B/sample (1 plan)  (2 plans)  '
          'torch.save size (1 plan / 2 plans)')
    for row in states:
        print(f'{row["num_samples"]:<12d} {row["planned_fraction"]:<10.3f} '
              f'{row["one_plan_bytes_per_sample"]:<24.2f} '
              f'{row["two_plans_bytes_per_sample"]:<10.2f} '
              f'{format_bytes(row["one_plan_saved_bytes"])} / '
              f'{format_bytes(row["two_plans_saved_bytes"])}')


def print_goals(timings, states) -> None:
    largest = max(timings, key=lambda row: row['num_samples'])
    state = max(states, key=lambda row: row['num_samples'])
    checks = [
        (f'reference/ours >= {GOAL_SPEEDUP:g} at N={largest["num_samples"]}',
         largest['speedup'] >= GOAL_SPEEDUP, f'{largest["speedup"]:.1f}x'),
        (f'ours <= {GOAL_SECONDS} s at N={largest["num_samples"]}',
         largest['ours_median_s'] <= GOAL_SECONDS,
         f'{largest["ours_median_s"]:.3f} s'),
        (f'state <= {GOAL_STATE_BYTES_PER_SAMPLE:g} B/sample, one plan held',
         state['one_plan_bytes_per_sample'] <= GOAL_STATE_BYTES_PER_SAMPLE,
         f'{state["one_plan_bytes_per_sample"]:.2f} B'),
        (f'state <= {GOAL_STATE_BYTES_PER_SAMPLE:g} B/sample, two plans held',
         state['two_plans_bytes_per_sample'] <= GOAL_STATE_BYTES_PER_SAMPLE,
         f'{state["two_plans_bytes_per_sample"]:.2f} B'),
        (f'state <= {GOAL_STATE_BYTES_PER_SAMPLE:g} B/sample, unpruned plans, untrained '
         'positions only (plus read-ahead)',
         state['two_full_plans_bytes_per_sample_bound'] <= GOAL_STATE_BYTES_PER_SAMPLE,
         f'{state["two_full_plans_bytes_per_sample_bound"]} B (computed)'),
    ]
    print()
    for goal, met, measured in checks:
        print(f'{"met   " if met else "MISSED"}  {goal}: {measured}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=list(DEFAULT_SIZES),
                        help='dataset sizes N to plan for (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=7,
                        help='timed plans of ours per size (default: %(default)s)')
    parser.add_argument('--reference-repeats', type=int, default=5,
                        help='timed plans of the reference per size, interleaved '
                        'with ours (default: %(default)s)')
    parser.add_argument('--prune-ratio', type=float, default=0.5,
                        help='fraction of well-learned samples pruned (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed for scores and both generators (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads for ours. The NumPy reference '
                        'is single-threaded (default: %(default)s)')
    parser.add_argument('--skip-memory', action='store_true',
                        help='skip the peak-memory subprocesses')
    parser.add_argument('--json', help='file to write all measurements to')
    parser.add_argument('--memory-probe', nargs=2, metavar=('SIDE', 'N'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.reference_repeats, args.threads) < 1:
        parser.error('--repeats, --reference-repeats and --threads must be >= 1')
    if any(size < 1 for size in args.sizes):
        parser.error(f'--sizes must be positive, got {args.sizes}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe is not None:
        side, num_samples = args.memory_probe
        print(json.dumps(probe_memory(side, int(num_samples), args.prune_ratio,
                                      args.seed)))
        return 0

    machine_before = describe_machine()
    print(f'machine: {machine_before}')
    timings = []
    for num_samples in args.sizes:
        row = time_size(num_samples, args.prune_ratio, args.repeats,
                        args.reference_repeats, args.seed)
        print(f'N={num_samples}: ours {row["ours_median_s"]:.4f} s, reference '
              f'{row["reference_median_s"]:.4f} s, ratio {row["speedup"]:.1f}', flush=True)
        timings.append(row)

    memory = []
    if not args.skip_memory:
        for num_samples in args.sizes:
            for side in ('ours', 'reference'):
                memory.append(measure_memory(side, num_samples, args.prune_ratio,
                                             args.seed))
    states = [measure_state(num_samples, args.prune_ratio, args.seed)
              for num_samples in args.sizes]
    machine_after = describe_machine()
    print(f'machine at the end: {machine_after}')

    print_report(timings, memory, states)
    print_goals(timings, states)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as file:
            json.dump(dict(machine_before=machine_before, machine_after=machine_after,
                           prune_ratio=args.prune_ratio, seed=args.seed,
                           timings=timings, memory=memory, states=states),
                      file, indent=2)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
