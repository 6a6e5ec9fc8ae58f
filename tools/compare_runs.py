"""Compare iteration-based mmsegmentation runs against a baseline run.

Input: mmengine work dirs. Each contains timestamped run folders
``YYYYMMDD_HHMMSS/vis_data/scalars.json`` with one JSON object per line:

* Train lines contain ``loss`` or ``lr``. Their ``step`` is the training
  iteration, and ``time`` is the seconds per iteration averaged over
  mmengine's smoothing window.
* Validation lines contain ``mIoU`` in percent. Their ``step`` is the
  training iteration at which the model was evaluated.
* mmib InfoBatch lines have keys prefixed ``infobatch/``, one line per
  virtual epoch at step = first iteration of the epoch + 1.
  ``infobatch/samples_seen`` counts the images forwarded before that
  iteration.

Output: one table row per run, baseline first. A row gives the last logged
iteration, final and best mIoU, the first evaluated iteration that reaches
the target mIoU, images forwarded and the estimated train time in seconds.
It also gives the savings in iterations and time as percentages of the
baseline. ``--json`` writes the rows to a file. ``--plot`` draws mIoU against
iteration and the pruned fraction per virtual epoch.

Exit status: 0 when the baseline is usable, even if other runs are not (those
get a message on stderr and an error row). 1 when the baseline is unusable or
a requested output file cannot be written. 2 for invalid arguments.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCALARS_PATH = Path('vis_data') / 'scalars.json'
RUN_FOLDER_PATTERN = re.compile(r'^\d{8}_\d{6}$')
INFOBATCH_PREFIX = 'infobatch/'

# mmseg rounds mIoU to 2 decimals, so a run that logs exactly the printed
# target must count as reaching it despite float error in final - tolerance.
TARGET_SLACK = 1e-6


class UnusableRunError(Exception):
    """Raised for a work dir without training data; the message gives the reason."""


@dataclass
class FolderLog:
    """Scalars of one timestamped run folder, keyed by training iteration."""

    path: Path
    train_times: dict[int, float | None] = field(default_factory=dict)
    val_miou: dict[int, float] = field(default_factory=dict)
    infobatch: dict[int, dict[str, float]] = field(default_factory=dict)
    num_malformed: int = 0
    first_malformed_line: int | None = None


@dataclass
class RunLog:
    """Scalars of one work dir after merging its run folders."""

    work_dir: Path
    folders: list[str]
    train_times: dict[int, float | None]
    val_miou: dict[int, float]
    infobatch: dict[int, dict[str, float]]
    num_malformed: int


@dataclass
class RunSummary:
    """One output row. Iterations are training iterations, times are seconds.

    Savings are percentages of the baseline value. Positive means the run
    needed fewer iterations or less time than the baseline.
    """

    name: str
    work_dir: str
    folders: list[str] = field(default_factory=list)
    error: str | None = None
    num_malformed_lines: int = 0
    max_iter: int | None = None
    final_miou: float | None = None
    final_iter: int | None = None
    best_miou: float | None = None
    best_iter: int | None = None
    reached_iter: int | None = None
    images_forwarded: int | None = None
    images_source: str | None = None
    train_time_s: float | None = None
    iter_saving_pct: float | None = None
    time_saving_pct: float | None = None
    reach_saving_pct: float | None = None


def warn(message: str) -> None:
    print(f'warning: {message}', file=sys.stderr)


def is_number(value: object) -> bool:
    """Return whether value is an int or float (NaN and inf included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    return is_number(value) and math.isfinite(value)


def parse_scalars_line(text: str) -> dict | None:
    """Parse one scalars.json line, or return None if it is malformed.

    A line is malformed when it is not a JSON object, has no integer ``step``,
    has a non-finite or non-numeric ``mIoU`` or ``time``, or a non-numeric
    ``infobatch/`` value. Non-finite ``infobatch/`` values are dropped later.
    """
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None

    step = record.get('step')
    if not is_finite_number(step) or step != int(step) or step < 0:
        return None
    for key in ('mIoU', 'time'):
        if key in record and not is_finite_number(record[key]):
            return None
    for key, value in record.items():
        if key.startswith(INFOBATCH_PREFIX) and not is_number(value):
            return None
    return record


def add_record(log: FolderLog, record: dict) -> None:
    """File one parsed line under train, validation and InfoBatch scalars."""
    step = int(record['step'])

    infobatch = {key: float(value) for key, value in record.items()
                 if key.startswith(INFOBATCH_PREFIX) and math.isfinite(value)}
    if infobatch:
        log.infobatch.setdefault(step, {}).update(infobatch)

    if 'mIoU' in record:
        log.val_miou[step] = float(record['mIoU'])
    elif 'loss' in record or 'lr' in record:
        time = record.get('time')
        log.train_times[step] = float(time) if time is not None else None


def read_folder_log(folder: Path) -> FolderLog:
    """Read ``folder/vis_data/scalars.json``, skipping and counting bad lines."""
    log = FolderLog(path=folder)
    path = folder / SCALARS_PATH
    with path.open(encoding='utf-8', errors='replace') as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            record = parse_scalars_line(line)
            if record is None:
                log.num_malformed += 1
                if log.first_malformed_line is None:
                    log.first_malformed_line = line_number
                continue
            add_record(log, record)
    return log


def find_run_folders(work_dir: Path) -> list[Path]:
    """Return the run folders of a work dir, oldest first.

    ``work_dir`` may also be one run folder, i.e. contain vis_data/scalars.json
    itself. Raises UnusableRunError when nothing readable is found.
    """
    if not work_dir.exists():
        raise UnusableRunError(
            f'work dir {work_dir} not found; check the path')
    if not work_dir.is_dir():
        raise UnusableRunError(
            f'{work_dir} is not a directory; pass an mmengine work dir')
    if (work_dir / SCALARS_PATH).is_file():
        return [work_dir]

    folders = sorted(
        path for path in work_dir.iterdir()
        if path.is_dir() and RUN_FOLDER_PATTERN.match(path.name)
        and (path / SCALARS_PATH).is_file())
    if not folders:
        raise UnusableRunError(
            f'no YYYYMMDD_HHMMSS/{SCALARS_PATH} found in {work_dir}; pass the '
            'work_dir of an mmengine training run that logged at least once')
    return folders


def drop_from_step(entries: dict[int, object], start: int) -> int:
    """Delete entries at iteration ``start`` or later and return how many."""
    stale = [step for step in entries if step >= start]
    for step in stale:
        del entries[step]
    return len(stale)


def drop_repeated_epochs(infobatch: dict[int, dict[str, float]],
                         later: dict[int, dict[str, float]]) -> int:
    """Delete entries for virtual epochs that ``later`` logs again.

    Returns how many entries were deleted.
    """
    key = INFOBATCH_PREFIX + 'virtual_epoch'
    later_epochs = {values[key] for values in later.values() if key in values}
    stale = [step for step, values in infobatch.items()
             if values.get(key) in later_epochs]
    for step in stale:
        del infobatch[step]
    return len(stale)


def merge_folder_logs(work_dir: Path, folder_logs: list[FolderLog],
                      name: str) -> RunLog:
    """Merge run folders in time order into one run.

    A later folder supersedes all earlier entries from its first training
    iteration onward. A run resumed from a checkpoint at iteration C logs its
    first train line after C, so the earlier folder keeps everything up to C,
    including its evaluation at C, and loses what it logged after C before
    it stopped. A restart from scratch supersedes the earlier folder entirely.
    A virtual epoch logged again by a later folder keeps only the later entry.
    Folders without train lines (evaluation-only runs, crashes before the first
    log interval) are skipped.
    """
    merged = RunLog(work_dir=work_dir, folders=[], train_times={},
                    val_miou={}, infobatch={}, num_malformed=0)
    for log in folder_logs:
        merged.num_malformed += log.num_malformed
        if not log.train_times:
            warn(f'{name}: {log.path.name} has no train lines '
                 '(evaluation-only run or stopped before the first log '
                 'interval); skipped')
            continue

        start = min(log.train_times)
        num_dropped = sum(
            drop_from_step(entries, start)
            for entries in (merged.train_times, merged.val_miou,
                            merged.infobatch))
        num_dropped += drop_repeated_epochs(merged.infobatch, log.infobatch)
        if num_dropped:
            print(f'{name}: {log.path.name} supersedes {num_dropped} '
                  'entries of earlier folders (those from iteration '
                  f'{start} on and repeated virtual epochs)')

        merged.train_times.update(log.train_times)
        merged.val_miou.update(log.val_miou)
        merged.infobatch.update(log.infobatch)
        merged.folders.append(log.path.name)
    return merged


def describe_folder(log: FolderLog) -> str:
    steps = list(log.train_times) + list(log.val_miou) + list(log.infobatch)
    if not steps:
        return f'{log.path.name} (no scalars)'
    return f'{log.path.name} (iterations {min(steps)}-{max(steps)})'


def load_run(work_dir: Path, name: str) -> RunLog:
    """Read and merge every run folder of a work dir, reporting what it used.

    Raises UnusableRunError when no folder contains a train line.
    """
    folder_logs = [read_folder_log(path)
                   for path in find_run_folders(work_dir)]
    for log in folder_logs:
        if log.num_malformed:
            warn(f'{name}: skipped {log.num_malformed} malformed lines in '
                 f'{log.path / SCALARS_PATH} (first at line '
                 f'{log.first_malformed_line})')

    described = ', '.join(describe_folder(log) for log in folder_logs)
    print(f'{name}: read {work_dir}: {described}')

    run = merge_folder_logs(work_dir, folder_logs, name)
    if not run.train_times:
        raise UnusableRunError(
            f'no train lines in any run folder of {work_dir}')
    if len(run.folders) > 1:
        print(f'{name}: merged folders {", ".join(run.folders)} '
              '(later folders supersede earlier ones)')
    return run


def find_best(val_miou: dict[int, float]) -> tuple[float, int]:
    """Return the best mIoU and its iteration, the earliest one on ties."""
    best_step = min(val_miou)
    for step in sorted(val_miou):
        if val_miou[step] > val_miou[best_step]:
            best_step = step
    return val_miou[best_step], best_step


def find_first_reach(val_miou: dict[int, float], target: float) -> int | None:
    for step in sorted(val_miou):
        if val_miou[step] >= target - TARGET_SLACK:
            return step
    return None


def estimate_train_time(train_times: dict[int, float | None]) -> float | None:
    """Estimate train seconds as the sum of ``time`` x iterations per line.

    mmengine's ``time`` is seconds per iteration averaged over its smoothing
    window, so each line stands for the iterations since the previous train
    line (or since iteration 0). Returns None if a line lacks ``time``.
    """
    total = 0.0
    previous_step = 0
    for step in sorted(train_times):
        seconds_per_iter = train_times[step]
        if seconds_per_iter is None:
            return None
        total += seconds_per_iter * (step - previous_step)
        previous_step = step
    return total


def samples_per_iter_from_log(run: RunLog) -> int | None:
    """Derive the global batch size from the last ``infobatch/samples_seen``.

    mmib logs a virtual epoch at step = iteration + 1 with samples_seen = the
    samples consumed before that iteration, i.e. (step - 1) x batch size.
    Returns None when no line after step 1 has samples_seen.
    """
    key = INFOBATCH_PREFIX + 'samples_seen'
    steps = [step for step, values in run.infobatch.items()
             if key in values and step > 1]
    if not steps:
        return None
    last = max(steps)
    return round(run.infobatch[last][key] / (last - 1))


def count_images(run: RunLog, name: str, max_iter: int,
                 batch_size: int | None) -> tuple[int | None, str | None]:
    """Return images forwarded up to max_iter and where the number comes from.

    Every iteration forwards one global batch, pruned or not, so the count is
    max_iter x batch size. The batch size comes from infobatch/samples_seen
    when logged, otherwise from --batch-size.
    """
    logged = samples_per_iter_from_log(run)
    if logged is not None:
        if batch_size is not None and batch_size != logged:
            warn(f'{name}: --batch-size {batch_size} differs from the '
                 f'{logged} images per iteration implied by '
                 'infobatch/samples_seen; using the logged value')
        return max_iter * logged, 'iterations x infobatch/samples_seen rate'
    if batch_size is not None:
        return max_iter * batch_size, 'iterations x --batch-size'
    return None, None


def kept_fraction(values: dict[str, float]) -> float | None:
    """Return the kept fraction of one virtual epoch's InfoBatch scalars.

    Uses ``infobatch/kept_fraction`` when logged, otherwise
    num_planned / (num_planned + num_pruned). Returns None if neither is there.
    """
    logged = values.get(INFOBATCH_PREFIX + 'kept_fraction')
    if logged is not None:
        return logged
    planned = values.get(INFOBATCH_PREFIX + 'num_planned')
    pruned = values.get(INFOBATCH_PREFIX + 'num_pruned')
    if planned is None or pruned is None or planned + pruned <= 0:
        return None
    return planned / (planned + pruned)


def summarize_run(name: str, run: RunLog, target: float,
                  batch_size: int | None) -> RunSummary:
    summary = RunSummary(name=name, work_dir=str(run.work_dir),
                         folders=run.folders,
                         num_malformed_lines=run.num_malformed)
    summary.max_iter = max(run.train_times)
    summary.train_time_s = estimate_train_time(run.train_times)
    summary.images_forwarded, summary.images_source = count_images(
        run, name, summary.max_iter, batch_size)

    if run.val_miou:
        summary.final_iter = max(run.val_miou)
        summary.final_miou = run.val_miou[summary.final_iter]
        summary.best_miou, summary.best_iter = find_best(run.val_miou)
        summary.reached_iter = find_first_reach(run.val_miou, target)
    return summary


def saving_pct(baseline: float | None, value: float | None) -> float | None:
    if baseline is None or value is None or baseline == 0:
        return None
    return (baseline - value) / baseline * 100


def add_savings(summary: RunSummary, baseline: RunSummary) -> None:
    summary.iter_saving_pct = saving_pct(baseline.max_iter, summary.max_iter)
    summary.time_saving_pct = saving_pct(baseline.train_time_s,
                                         summary.train_time_s)
    summary.reach_saving_pct = saving_pct(baseline.reached_iter,
                                          summary.reached_iter)


def format_at(value: float | None, step: int | None) -> str:
    if value is None:
        return 'n/a'
    return f'{value:.2f} @ {step}'


def format_optional(value: float | None, spec: str, suffix: str = '') -> str:
    if value is None:
        return 'n/a'
    return f'{value:{spec}}{suffix}'


def format_reached(summary: RunSummary) -> str:
    if summary.final_miou is None:
        return 'no validation'
    if summary.reached_iter is None:
        return 'not reached'
    return str(summary.reached_iter)


TABLE_HEADER = ('run', 'max iter', 'final mIoU @ iter', 'best mIoU @ iter',
                'target reached @ iter', 'images', 'train time (s)',
                'schedule saving (iters)', 'time saving')


def format_row(summary: RunSummary) -> tuple[str, ...]:
    if summary.error is not None:
        return (summary.name, f'unusable: {summary.error}')
    return (summary.name,
            str(summary.max_iter),
            format_at(summary.final_miou, summary.final_iter),
            format_at(summary.best_miou, summary.best_iter),
            format_reached(summary),
            format_optional(summary.images_forwarded, 'd'),
            format_optional(summary.train_time_s, '.1f'),
            format_optional(summary.iter_saving_pct, '.1f', '%'),
            format_optional(summary.time_saving_pct, '.1f', '%'))


def format_table(summaries: list[RunSummary]) -> str:
    """Align the rows in columns. Error rows span the columns after the name."""
    rows = [TABLE_HEADER] + [format_row(summary) for summary in summaries]
    full_rows = [row for row in rows if len(row) == len(TABLE_HEADER)]
    widths = [max(len(row[column]) for row in full_rows)
              for column in range(len(TABLE_HEADER))]
    widths[0] = max(len(row[0]) for row in rows)

    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def format_reach_line(summary: RunSummary, baseline: RunSummary,
                      target: float) -> str:
    prefix = f'target {target:.2f} mIoU: {summary.name}'
    if summary.reached_iter is None:
        return (f'{prefix} did not reach it (best '
                f'{format_at(summary.best_miou, summary.best_iter)})')

    reached = f'{prefix} reached it at {summary.reached_iter} iterations'
    if summary is baseline:
        return f'{reached} (reference)'
    if summary.reach_saving_pct is None:
        return f'{reached} (baseline did not reach it)'
    direction = 'fewer' if summary.reach_saving_pct >= 0 else 'more'
    return (f'{reached} ({abs(summary.reach_saving_pct):.1f}% {direction} '
            'than baseline)')


def write_json(path: Path, target: float, target_source: str,
               summaries: list[RunSummary]) -> None:
    document = {
        'target_miou': target,
        'target_source': target_source,
        'runs': [asdict(summary) for summary in summaries],
    }
    path.write_text(json.dumps(document, indent=2) + '\n', encoding='utf-8')


def pruned_fraction_series(run: RunLog) -> tuple[list[int], list[float]]:
    """Return (iteration, pruned fraction) per logged virtual epoch."""
    steps, fractions = [], []
    for step in sorted(run.infobatch):
        kept = kept_fraction(run.infobatch[step])
        if kept is not None:
            steps.append(step)
            fractions.append(1.0 - kept)
    return steps, fractions


def plot_runs(path: Path, named_runs: list[tuple[str, RunLog]],
              target: float) -> None:
    """Save mIoU vs iteration, and pruned fraction vs iteration if logged.

    Raises ImportError if matplotlib is not installed.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    # Colors follow the run index so that a run has one color in both panels.
    colors = [f'C{index}' for index in range(len(named_runs))]
    pruned_series = [(name, color, *pruned_fraction_series(run))
                     for (name, run), color in zip(named_runs, colors)]
    pruned_series = [series for series in pruned_series if series[2]]
    num_panels = 2 if pruned_series else 1
    figure, axes = plt.subplots(num_panels, 1, sharex=True, squeeze=False,
                                figsize=(8, 4 * num_panels))

    miou_axis = axes[0][0]
    for (name, run), color in zip(named_runs, colors):
        steps = sorted(run.val_miou)
        miou_axis.plot(steps, [run.val_miou[step] for step in steps],
                       marker='o', color=color, label=name)
    miou_axis.axhline(target, color='gray', linestyle='--',
                      label=f'target {target:.2f}')
    miou_axis.set_ylabel('mIoU (%)')
    miou_axis.legend()
    miou_axis.grid(alpha=0.3)

    if pruned_series:
        pruned_axis = axes[1][0]
        for name, color, steps, fractions in pruned_series:
            pruned_axis.plot(steps, fractions, marker='.',
                             drawstyle='steps-post', color=color, label=name)
        pruned_axis.set_ylabel('pruned fraction per virtual epoch')
        pruned_axis.legend()
        pruned_axis.grid(alpha=0.3)
    axes[-1][0].set_xlabel('training iteration')

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be an integer, got {text!r}') from None


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be a number, got {text!r}') from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f'must be finite, got {text}')
    return value


def positive_int(text: str) -> int:
    value = parse_int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f'must be a positive integer, got {text}')
    return value


def non_negative_float(text: str) -> float:
    value = parse_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {text}')
    return value


EPILOG = """\
Resumed runs: a work dir may contain several YYYYMMDD_HHMMSS run folders, for
example after resuming from a checkpoint. All of them are merged in time
order, and each later folder supersedes earlier entries from its first train
iteration on. So a resumed run keeps the evaluations up to its checkpoint,
and a restart from scratch replaces the earlier folder. Folders without train
lines are skipped. The folders used are printed.

Train time: each train line's `time` (seconds per iteration) times the
iterations since the previous train line, summed. This is an estimate because
mmengine averages `time` over a window of recent iterations.

Savings are percentages of the baseline. Positive means fewer iterations or
less time than the baseline.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--baseline', required=True, type=Path,
                        metavar='WORK_DIR',
                        help='work dir of the baseline run (full data)')
    parser.add_argument('--run', action='append', default=[], type=Path,
                        metavar='WORK_DIR',
                        help='work dir of a run to compare; repeat for several')
    parser.add_argument('--name', action='append', default=[],
                        help='display name, baseline first, then each --run '
                        'in order; runs without a name use the work dir '
                        'basename')
    parser.add_argument('--target-miou', type=float,
                        help='target mIoU in percent (default: baseline final '
                        'mIoU minus --tolerance)')
    parser.add_argument('--tolerance', type=non_negative_float, default=0.3,
                        help='mIoU points below the baseline final mIoU that '
                        'still count as reaching it (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int,
                        help='global batch size in images per iteration; '
                        'images forwarded = max iteration x batch size. Runs '
                        'that logged infobatch/samples_seen use the batch '
                        'size implied by it instead')
    parser.add_argument('--plot', type=Path, metavar='FILE.png',
                        help='PNG file for mIoU vs iteration and the pruned '
                        'fraction per virtual epoch (needs matplotlib)')
    parser.add_argument('--json', type=Path, metavar='FILE',
                        help='file to write the target and rows to as JSON')
    return parser


def default_name(work_dir: Path) -> str:
    return work_dir.resolve().name or str(work_dir)


def assign_names(args: argparse.Namespace,
                 parser: argparse.ArgumentParser) -> list[str]:
    work_dirs = [args.baseline] + args.run
    if len(args.name) > len(work_dirs):
        parser.error(f'got {len(args.name)} --name values for '
                     f'{len(work_dirs)} runs (baseline plus {len(args.run)} '
                     '--run); pass at most one --name per run')
    defaults = [default_name(path) for path in work_dirs]
    return args.name + defaults[len(args.name):]


def load_runs(args: argparse.Namespace, names: list[str]
              ) -> list[tuple[str, Path, RunLog | None, str | None]]:
    """Load every --run as (name, work dir, run or None, error or None)."""
    loaded = []
    for name, work_dir in zip(names[1:], args.run):
        try:
            loaded.append((name, work_dir, load_run(work_dir, name), None))
        except (UnusableRunError, OSError) as error:
            print(f'error: run {name}: {error}', file=sys.stderr)
            loaded.append((name, work_dir, None, str(error)))
    return loaded


def resolve_target(args: argparse.Namespace,
                   baseline: RunLog) -> tuple[float, str]:
    if args.target_miou is not None:
        return args.target_miou, '--target-miou'
    final = baseline.val_miou[max(baseline.val_miou)]
    return (final - args.tolerance,
            f'baseline final mIoU {final:.2f} - tolerance {args.tolerance:.2f}')


def write_outputs(args: argparse.Namespace, target: float, target_source: str,
                  summaries: list[RunSummary],
                  named_runs: list[tuple[str, RunLog]]) -> int:
    """Write the --json and --plot files and return the exit status.

    Returns 1 if a file could not be written, otherwise 0.
    """
    status = 0
    if args.json is not None:
        try:
            write_json(args.json, target, target_source, summaries)
            print(f'wrote {args.json}')
        except OSError as error:
            print(f'error: cannot write --json {args.json}: {error}',
                  file=sys.stderr)
            status = 1
    if args.plot is not None:
        try:
            plot_runs(args.plot, named_runs, target)
            print(f'wrote {args.plot}')
        except ImportError:
            print('error: --plot needs matplotlib; install it with '
                  '`pip install matplotlib` or drop --plot', file=sys.stderr)
            status = 1
        except OSError as error:
            print(f'error: cannot write --plot {args.plot}: {error}',
                  file=sys.stderr)
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = assign_names(args, parser)

    try:
        baseline_run = load_run(args.baseline, names[0])
    except (UnusableRunError, OSError) as error:
        print(f'error: baseline {names[0]} is unusable: {error}',
              file=sys.stderr)
        return 1
    if not baseline_run.val_miou:
        print(f'error: baseline {names[0]} is unusable: no validation lines '
              f'with mIoU in {args.baseline}, so there is no target or '
              'reference iteration; use a baseline that evaluated at least '
              'once', file=sys.stderr)
        return 1

    target, target_source = resolve_target(args, baseline_run)
    baseline = summarize_run(names[0], baseline_run, target, args.batch_size)
    add_savings(baseline, baseline)
    summaries = [baseline]
    named_runs = [(names[0], baseline_run)]

    for name, work_dir, run, error in load_runs(args, names):
        if run is None:
            summaries.append(RunSummary(name=name, work_dir=str(work_dir),
                                        error=error))
            continue
        if not run.val_miou:
            warn(f'{name}: no validation lines with mIoU; mIoU columns are n/a')
        summary = summarize_run(name, run, target, args.batch_size)
        add_savings(summary, baseline)
        summaries.append(summary)
        named_runs.append((name, run))

    print()
    print(f'target mIoU: {target:.2f} ({target_source})')
    print(format_table(summaries))
    print()
    for summary in summaries:
        if summary.error is None and summary.final_miou is not None:
            print(format_reach_line(summary, baseline, target))

    return write_outputs(args, target, target_source, summaries, named_runs)


if __name__ == '__main__':
    sys.exit(main())
