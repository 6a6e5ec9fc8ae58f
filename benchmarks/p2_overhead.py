"""P2: wall time per training iteration, InfoBatch against stock mmseg.

Both arms train the CPU demo config (same model, data, seed and schedule)
through ``tools/train.py``:

* ``infobatch``: the config as it is: ``InfoBatchEncoderDecoder``,
  ``InfiniteInfoBatchSampler`` with ``prune_ratio=0.5`` and ``InfoBatchHook``.
* ``stock``: ``EncoderDecoder``, mmengine's ``InfiniteSampler`` and no custom
  hooks, switched with ``--cfg-options``.

Runs alternate (infobatch, stock, infobatch, stock, ...) so that load from
other processes on the machine falls on both arms. Each run logs every
iteration with a smoothing window of 1, so each ``time`` entry in
``vis_data/scalars.json`` is the wall time of one iteration as mmengine's
IterTimerHook measures it. That is the time from the end of one iteration to
the end of the next, with data loading and all hooks included. The first ``--warmup`` iterations
of every run are dropped (worker start-up, allocator growth). The result is
the ratio of the medians over all kept iterations of each arm, infobatch /
stock. Validation is off (``val_begin`` past the end) and checkpoints are
saved only after the last iteration.

A second, finer measurement runs in this process: the demo model built as
``InfoBatchEncoderDecoder`` and as ``EncoderDecoder`` with the same initial
weights, each with its own SGD optimizer, takes ``train_step`` on the same
batch of 4 training crops in alternation (stock, infobatch, infobatch, stock,
...). The InfoBatch batch carries weights 1 and 2 as the hook would set them.
This isolates the per-image loss and weighting inside the model from the
sampler, the hook and data loading, and is far less disturbed by other load
than whole runs are.

A third measurement covers what the second leaves out: one more InfoBatch
run under cProfile, from which the time spent in ``InfoBatchHook``'s
``before_train_iter`` and ``after_train_iter`` and in the sampler's index
generator (all in the main process) is divided by the iterations. cProfile
slows Python calls, so this is an upper bound.

Run from the repository root:
    .venv/bin/python benchmarks/p2_overhead.py [--pairs 3] [--iters 120]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import training_runs as runs

ARMS = ('infobatch', 'stock')
GOAL_RATIO = 1.01


def common_options(iters: int, seed: int) -> list[str]:
    return [
        f'train_cfg.max_iters={iters}',
        f'param_scheduler.0.end={iters}',
        f'train_cfg.val_begin={iters + 1}',
        'default_hooks.logger.interval=1',
        'log_processor.window_size=1',
        f'default_hooks.checkpoint.interval={iters}',
        f'randomness.seed={seed}',
    ]


def arm_options(arm: str, iters: int, seed: int) -> list[str]:
    options = common_options(iters, seed)
    if arm == 'stock':
        options += list(runs.STOCK_OPTIONS)
    return options


def load_train_batch(data_root: Path, batch_size: int, seed: int) -> list:
    """Return ``batch_size`` samples of the demo train pipeline, packed."""
    import random

    import numpy as np
    from mmengine.config import Config
    from mmengine.dataset import Compose

    config = Config.fromfile(str(runs.DEMO_CONFIG))
    pipeline = Compose(config.train_pipeline)
    random.seed(seed)
    np.random.seed(seed)
    images = sorted((data_root / 'images' / 'training').glob('*.jpg'))[:batch_size]
    samples = []
    for image in images:
        seg_map = data_root / 'annotations' / 'training' / (image.stem + '.png')
        samples.append(pipeline(dict(img_path=str(image), seg_map_path=str(seg_map),
                                     reduce_zero_label=True, seg_fields=[])))
    return samples


def measure_model_step(data_root: Path, rounds: int, warmup: int, seed: int) -> dict:
    """Time ``train_step`` of the stock and InfoBatch demo model, alternating."""
    import copy

    import torch
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope

    import mmib  # noqa: F401  (registers the InfoBatch segmentors)
    from mmib.segmentors import INDEX_KEY, WEIGHT_KEY
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')
    config = Config.fromfile(str(runs.DEMO_CONFIG))
    batch_size = config.train_dataloader.batch_size
    samples = load_train_batch(data_root, batch_size, seed)

    torch.manual_seed(seed)
    models = {'infobatch': MODELS.build(copy.deepcopy(config.model))}
    stock_cfg = copy.deepcopy(config.model)
    stock_cfg.type = 'EncoderDecoder'
    models['stock'] = MODELS.build(stock_cfg)
    models['stock'].load_state_dict(models['infobatch'].state_dict())
    optimizer_cfg = config.optim_wrapper.optimizer
    wrappers = {}
    for arm, model in models.items():
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=optimizer_cfg.lr,
                                    momentum=optimizer_cfg.momentum,
                                    weight_decay=optimizer_cfg.weight_decay)
        wrappers[arm] = OptimWrapper(optimizer)

    def make_batch(arm: str) -> dict:
        batch = pseudo_collate(copy.deepcopy(samples))
        if arm == 'infobatch':
            for index, sample in enumerate(batch['data_samples']):
                sample.set_metainfo({WEIGHT_KEY: float(1 + index % 2), INDEX_KEY: index})
        return batch

    times = {arm: [] for arm in ARMS}
    for round_index in range(warmup + rounds):
        order = ('stock', 'infobatch') if round_index % 2 == 0 else ('infobatch', 'stock')
        for arm in order:
            batch = make_batch(arm)
            start = time.perf_counter()
            models[arm].train_step(batch, wrappers[arm])
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[arm].append(elapsed)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    # Both steps of a round run back to back and share the machine's load at
    # that moment, so the median of per-round ratios is the least disturbed.
    round_ratios = [ours / stock for ours, stock in zip(times['infobatch'], times['stock'])]
    return dict(times=times, medians=medians,
                ratio=medians['infobatch'] / medians['stock'],
                paired_ratio=statistics.median(round_ratios),
                min_ratio=min(times['infobatch']) / min(times['stock']),
                torch_threads=torch.get_num_threads())


HOST_FUNCTIONS = (
    ('mmib/hooks/infobatch_hook.py', 'before_train_iter'),
    ('mmib/hooks/infobatch_hook.py', 'after_train_iter'),
    ('mmib/samplers/infobatch_sampler.py', '_rank_indices'),
)


def profile_host_side(args, data_root: Path, out_dir: Path) -> dict | None:
    """Profile one InfoBatch run and return seconds per iteration per function.

    Returns None if the run fails.
    """
    import pstats

    work_dir = out_dir / 'infobatch_profiled'
    profile_path = work_dir / 'train.prof'
    work_dir.mkdir(parents=True, exist_ok=True)
    command = runs.train_command(work_dir, data_root,
                                 arm_options('infobatch', args.iters, args.seed))
    command[1:1] = ['-m', 'cProfile', '-o', str(profile_path)]
    status, _ = runs.run_logged(command, work_dir / 'train_output.log')
    if status != 0:
        print(f'error: the profiled InfoBatch run failed with exit status {status}; last '
              f'lines of {work_dir / "train_output.log"}:\n'
              f'{runs.log_tail(work_dir / "train_output.log")}', file=sys.stderr)
        return None

    stats = pstats.Stats(str(profile_path)).stats
    per_iter = {}
    for suffix, name in HOST_FUNCTIONS:
        cumulative = sum(entry[3] for (path, _, function), entry in stats.items()
                         if path.endswith(suffix) and function == name)
        per_iter[f'{Path(suffix).stem}.{name}'] = cumulative / args.iters
    return dict(seconds_per_iter=per_iter, total_s_per_iter=sum(per_iter.values()))


def iteration_times(work_dir: Path, warmup: int) -> dict:
    """Return per-iteration times after the warm-up and the virtual epochs.

    ``virtual_epochs`` lists (first iteration, pruned samples) per virtual
    epoch that InfoBatch logged. It is empty for stock runs.
    """
    records = runs.read_scalars(runs.latest_scalars_path(work_dir))
    times, data_times, epochs = [], [], []
    for record in records:
        if 'time' in record and 'loss' in record and record['step'] > warmup:
            times.append(float(record['time']))
            data_times.append(float(record.get('data_time', float('nan'))))
        if 'infobatch/num_pruned' in record:
            # InfoBatch logs a virtual epoch at step = its first iteration + 1.
            epochs.append((record['step'] - 1, int(record['infobatch/num_pruned'])))
    return dict(time=times, data_time=data_times, virtual_epochs=epochs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pairs', type=int, default=3,
                        help='number of (infobatch, stock) run pairs (default: %(default)s)')
    parser.add_argument('--iters', type=int, default=120,
                        help='training iterations per run (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=10,
                        help='iterations dropped at the start of each run (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of every run (default: %(default)s)')

    parser.add_argument('--step-rounds', type=int, default=40,
                        help='timed rounds of the in-process model-step comparison, '
                        '0 to skip it (default: %(default)s)')
    parser.add_argument('--torch-threads', type=int,
                        help='torch intra-op threads (OMP_NUM_THREADS) for both arms '
                        '(default: torch default, one per CPU)')
    parser.add_argument('--skip-profile', action='store_true',
                        help='skip the profiled InfoBatch run')
    parser.add_argument('--skip-runs', action='store_true',
                        help='skip the training runs and run only the model-step '
                        'comparison')

    parser.add_argument('--data-root',
                        help='ADE20K-layout dataset (default: ../shared/data/camvid_ade150 '
                        'next to the repository, else the generated demo set)')
    parser.add_argument('--out-dir', default=str(runs.REPO_ROOT / 'work_dirs' / 'benchmarks' / 'p2'),
                        help='folder for the run work dirs (default: %(default)s)')
    parser.add_argument('--json', help='file to write all measurements to')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands and exit')

    args = parser.parse_args(argv)
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error(f'--torch-threads must be >= 1, got {args.torch_threads}')
    if args.pairs < 1 or args.iters < 1 or args.warmup < 0 or args.step_rounds < 0:
        parser.error('--pairs and --iters must be >= 1, --warmup and --step-rounds >= 0')
    if args.warmup >= args.iters:
        parser.error(f'--warmup {args.warmup} leaves no iteration of --iters {args.iters}')
    return args


def run_pairs(args, data_root: Path, commands: dict, schedule: list) -> list | None:
    """Train the runs in order and return their timings, or None on failure."""
    out_dir = Path(args.out_dir).resolve()
    results = []
    for pair, arm in schedule:
        work_dir = out_dir / f'{arm}_{pair}'
        load_before = runs.load_average()
        status, wall_s = runs.run_logged(commands[pair, arm], work_dir / 'train_output.log')
        if status != 0:
            print(f'error: {arm}_{pair} failed with exit status {status}; last lines of '
                  f'{work_dir / "train_output.log"}:\n'
                  f'{runs.log_tail(work_dir / "train_output.log")}', file=sys.stderr)
            return None
        measured = iteration_times(work_dir, args.warmup)
        if not measured['time']:
            print(f'error: {arm}_{pair} logged no iteration times after the warm-up in '
                  f'{work_dir}', file=sys.stderr)
            return None
        median = statistics.median(measured['time'])
        print(f'{arm}_{pair}: {len(measured["time"])} iterations, median '
              f'{median:.4f} s/iter, run wall time {wall_s:.0f} s, load average before '
              f'{load_before}', flush=True)
        if measured['virtual_epochs']:
            epochs = ', '.join(f'from iteration {start}: {pruned} pruned'
                               for start, pruned in measured['virtual_epochs'])
            print(f'  virtual epochs: {epochs}')
        results.append(dict(pair=pair, arm=arm, work_dir=str(work_dir), wall_s=wall_s,
                            load_average_before=load_before, median_s=median, **measured))
    return results


def summarize_runs(results: list, num_pairs: int) -> dict:
    """Print and return the pooled medians, their ratio and per-pair ratios."""
    pooled = {arm: [t for row in results if row['arm'] == arm for t in row['time']]
              for arm in ARMS}
    pooled_data = {arm: [t for row in results if row['arm'] == arm for t in row['data_time']]
                   for arm in ARMS}
    medians = {arm: statistics.median(values) for arm, values in pooled.items()}
    ratio = medians['infobatch'] / medians['stock']
    # Load from other processes only adds time, so the fastest iterations are
    # the least disturbed. The 10th percentile is a robust lower envelope.
    tenth = {arm: statistics.quantiles(values, n=10)[0] for arm, values in pooled.items()}
    tenth_ratio = tenth['infobatch'] / tenth['stock']
    pair_ratios = []
    for pair in range(num_pairs):
        by_arm = {row['arm']: row['median_s'] for row in results if row['pair'] == pair}
        pair_ratios.append(by_arm['infobatch'] / by_arm['stock'])

    print()
    print('training runs (per-iteration wall time after the warm-up):')
    for arm in ARMS:
        print(f'  {arm:<10} median {medians[arm]:.4f} s/iter over {len(pooled[arm])} '
              f'iterations, mean {statistics.fmean(pooled[arm]):.4f}, median data_time '
              f'{statistics.median(pooled_data[arm]):.4f}')
    print(f'  ratio of medians infobatch/stock: {ratio:.4f} '
          f'({"met" if ratio <= GOAL_RATIO else "MISSED"}: goal <= {GOAL_RATIO})')
    print(f'  ratio of 10th percentiles infobatch/stock: {tenth_ratio:.4f}')
    print('  per-pair ratios of medians: ' + ', '.join(f'{value:.4f}' for value in pair_ratios))
    return dict(medians=medians, ratio=ratio, tenth_percentiles=tenth,
                tenth_percentile_ratio=tenth_ratio, pair_ratios=pair_ratios, runs=results)


def summarize_step(step: dict) -> None:
    print()
    print(f'model train_step in one process ({step["torch_threads"]} torch threads):')
    for arm in ARMS:
        print(f'  {arm:<10} median {step["medians"][arm]:.4f} s over '
              f'{len(step["times"][arm])} steps')
    print(f'  ratio of medians infobatch/stock: {step["ratio"]:.4f} '
          f'({"met" if step["ratio"] <= GOAL_RATIO else "MISSED"}: goal <= {GOAL_RATIO})')
    print(f'  median of per-round ratios: {step["paired_ratio"]:.4f}, ratio of minimums: '
          f'{step["min_ratio"]:.4f}')


def summarize_profile(profile: dict, document: dict) -> None:
    print()
    print('InfoBatch host-side time per iteration (cProfile, an upper bound):')
    for name, seconds in profile['seconds_per_iter'].items():
        print(f'  {name:<40} {seconds * 1000:.2f} ms')
    total = profile['total_s_per_iter']
    line = f'  total {total * 1000:.2f} ms'
    if 'training_runs' in document:
        stock = document['training_runs']['medians']['stock']
        line += f' = {total / stock * 100:.2f}% of the stock median iteration'
    print(line)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.torch_threads is not None:
        # Training subprocesses inherit the variable; set_num_threads covers
        # the model-step comparison in this process.
        os.environ['OMP_NUM_THREADS'] = str(args.torch_threads)
        import torch
        torch.set_num_threads(args.torch_threads)
    out_dir = Path(args.out_dir).resolve()
    try:
        data_root = runs.resolve_data_root(args.data_root, allow_generated=not args.dry_run)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2

    schedule = [(pair, arm) for pair in range(args.pairs) for arm in ARMS]
    commands = {
        (pair, arm): runs.train_command(out_dir / f'{arm}_{pair}', data_root,
                                        arm_options(arm, args.iters, args.seed))
        for pair, arm in schedule}
    print(f'data: {data_root}')
    print(f'machine: {platform.machine()}, {os.cpu_count()} logical CPUs, '
          f'Python {platform.python_version()}; load average {runs.load_average()}')
    if not args.skip_runs:
        for pair, arm in schedule:
            print(f'{arm}_{pair}: {runs.format_command(commands[pair, arm])}')
    if args.dry_run:
        return 0

    document = dict(data_root=str(data_root), iters=args.iters, warmup=args.warmup,
                    seed=args.seed, torch_threads=args.torch_threads,
                    load_average_start=runs.load_average())
    if not args.skip_runs:
        results = run_pairs(args, data_root, commands, schedule)
        if results is None:
            return 1
        document['training_runs'] = summarize_runs(results, args.pairs)
    if not args.skip_profile:
        profile = profile_host_side(args, data_root, out_dir)
        if profile is None:
            return 1
        document['host_side_profile'] = profile
        summarize_profile(profile, document)
    if args.step_rounds:
        document['model_step'] = measure_model_step(data_root, args.step_rounds,
                                                    warmup=5, seed=args.seed)
        summarize_step(document['model_step'])
    document['load_average_end'] = runs.load_average()
    print(f'\nload average at the end: {document["load_average_end"]}')

    if args.json:
        with open(args.json, 'w', encoding='utf-8') as file:
            json.dump(document, file, indent=2)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
