"""Tests of tools/plan_schedule.py with hand-computed schedules."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from workdir_factory import infobatch_line, make_work_dir, training_lines

TOOLS_DIR = Path(__file__).resolve().parents[1] / 'tools'
sys.path.insert(0, str(TOOLS_DIR))

import plan_schedule  # noqa: E402

BASE_ARGS = ['--baseline-iters', '80000', '--batch-size', '16',
             '--num-samples', '20210']


def run_plan(argv, tmp_path):
    """Run main(argv) with --json and return (exit code, plan dict or None)."""
    json_path = tmp_path / 'plan.json'
    code = plan_schedule.main(argv + ['--json', str(json_path)])
    plan = json.loads(json_path.read_text()) if json_path.exists() else None
    return code, plan


def test_default_plan(tmp_path):
    # kept = 1 - 0.5 x 0.5 = 0.75, so T = 80000 / (0.875 / 0.75 + 0.125)
    # = 80000 x 24 / 31 = 61935.48, rounded up to 62000.
    code, plan = run_plan(BASE_ARGS, tmp_path)

    assert code == 0
    assert plan['kept_fraction'] == pytest.approx(0.75)
    assert plan['max_iters_unrounded'] == pytest.approx(80000 * 24 / 31)
    assert plan['max_iters'] == 62000
    assert plan['iteration_saving_pct'] == pytest.approx(22.5)
    assert plan['pruning_iters'] == 54250
    assert plan['baseline_epochs'] == pytest.approx(80000 * 16 / 20210)
    assert plan['val_interval'] == 6200
    assert plan['num_evaluations'] == 10
    assert plan['baseline_num_evaluations'] == 10


def test_cfg_options_printed(capsys):
    code = plan_schedule.main(BASE_ARGS)

    out = capsys.readouterr().out
    assert code == 0
    assert ('--cfg-options train_cfg.max_iters=62000 '
            'param_scheduler.0.end=62000 train_cfg.val_interval=6200') in out
    assert 'train_cfg = dict(max_iters=62000, val_interval=6200)' in out
    assert 'end=62000, by_epoch=False)' in out
    assert 'expected saving vs baseline: 22.5%' in out


def test_no_pruning_keeps_baseline(tmp_path):
    _, plan = run_plan(BASE_ARGS + ['--prune-ratio', '0'], tmp_path)

    assert plan['kept_fraction'] == 1.0
    assert plan['max_iters'] == 80000
    assert plan['iteration_saving_pct'] == 0.0
    assert plan['val_interval'] == 8000


def test_delta_one_scales_by_kept(tmp_path):
    # kept = 1 - 0.4 x 0.5 = 0.8 and delta 1, so T = 10000 x 0.8 = 8000.
    _, plan = run_plan(['--baseline-iters', '10000', '--batch-size', '8',
                        '--num-samples', '1000', '--prune-ratio', '0.4',
                        '--delta', '1', '--round-to', '1'], tmp_path)

    assert plan['max_iters'] == 8000
    assert plan['pruning_iters'] == 8000
    assert plan['full_epochs_annealing'] == 0.0


def test_well_learned_fraction_used(tmp_path):
    # kept = 1 - 0.5 x 0.7 = 0.65, so T = 40000 / (0.875 / 0.65 + 0.125)
    # = 27189.5, rounded up to 27200. V = 27200 x 4000 / 40000 = 2720 -> 2700.
    _, plan = run_plan(['--baseline-iters', '40000', '--batch-size', '16',
                        '--num-samples', '20210',
                        '--well-learned-fraction', '0.7',
                        '--baseline-val-interval', '4000'], tmp_path)

    assert plan['kept_fraction'] == pytest.approx(0.65)
    assert plan['max_iters_unrounded'] == pytest.approx(27189.54, abs=0.01)
    assert plan['max_iters'] == 27200
    assert plan['val_interval'] == 2700
    assert plan['num_evaluations'] == 11
    assert plan['baseline_num_evaluations'] == 10


def test_val_interval_rounds_half_up(tmp_path):
    # T = 1000 and V = 1000 x 250 / 1000 = 250, which rounds up to 300.
    _, plan = run_plan(['--baseline-iters', '1000', '--batch-size', '2',
                        '--num-samples', '100', '--prune-ratio', '0',
                        '--baseline-val-interval', '250'], tmp_path)

    assert plan['val_interval'] == 300
    assert plan['num_evaluations'] == 4


def test_val_interval_at_least_100(tmp_path):
    _, plan = run_plan(['--baseline-iters', '1000', '--batch-size', '2',
                        '--num-samples', '100', '--prune-ratio', '0',
                        '--baseline-val-interval', '40'], tmp_path)

    assert plan['val_interval'] == 100


def test_round_to_disabled(tmp_path):
    _, plan = run_plan(BASE_ARGS + ['--round-to', '1'], tmp_path)

    assert plan['max_iters'] == 61936


@pytest.mark.parametrize('extra', [
    [],
    ['--prune-ratio', '0.9', '--delta', '0.5'],
    ['--well-learned-fraction', '1', '--prune-ratio', '0.7'],
    ['--delta', '1', '--round-to', '1'],
])
def test_plan_covers_baseline_epochs(tmp_path, extra):
    _, plan = run_plan(BASE_ARGS + extra, tmp_path)

    assert plan['equivalent_epochs'] >= plan['baseline_epochs'] - 1e-9
    assert plan['max_iters'] <= plan['baseline_iters']


def measured_work_dir(tmp_path, infobatch_lines):
    return make_work_dir(tmp_path, 'short_ib', {
        '20240101_000000': training_lines(1000) + infobatch_lines})


def test_measured_kept_fraction(tmp_path, capsys):
    # The first virtual epoch (no scores yet) and the annealing one keep
    # everything and are excluded: mean(0.6, 0.7) = 0.65.
    work_dir = measured_work_dir(tmp_path, [
        infobatch_line(1, 0, 1.0), infobatch_line(201, 1, 0.6),
        infobatch_line(401, 2, 0.7), infobatch_line(901, 3, 1.0)])

    code, plan = run_plan(['--baseline-iters', '40000', '--batch-size', '16',
                           '--num-samples', '20210',
                           '--well-learned-fraction', '0.1',
                           '--work-dir', str(work_dir)], tmp_path)

    out = capsys.readouterr().out
    assert code == 0
    assert plan['kept_fraction'] == pytest.approx(0.65)
    assert plan['max_iters'] == 27200
    assert plan['kept_fraction_source'].startswith('measured: mean over 2')
    assert 'excluding 2 that pruned nothing' in out


def test_measured_from_planned_and_pruned(tmp_path):
    work_dir = measured_work_dir(tmp_path, [
        infobatch_line(201, 1, None, num_planned=60, num_pruned=40),
        infobatch_line(401, 2, None, num_planned=70, num_pruned=30)])

    _, plan = run_plan(BASE_ARGS + ['--work-dir', str(work_dir)], tmp_path)

    assert plan['kept_fraction'] == pytest.approx(0.65)


def test_work_dir_missing(tmp_path, capsys):
    code, plan = run_plan(BASE_ARGS + ['--work-dir', str(tmp_path / 'nope')],
                          tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert plan is None
    assert f'--work-dir {tmp_path / "nope"}: work dir' in err
    assert 'not found' in err


def test_work_dir_without_infobatch(tmp_path, capsys):
    work_dir = measured_work_dir(tmp_path, [])

    code, _ = run_plan(BASE_ARGS + ['--work-dir', str(work_dir)], tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert 'no infobatch/kept_fraction' in err
    assert 'drop --work-dir' in err


def test_work_dir_without_pruning(tmp_path, capsys):
    work_dir = measured_work_dir(tmp_path, [
        infobatch_line(1, 0, 1.0), infobatch_line(201, 1, 1.0)])

    code, _ = run_plan(BASE_ARGS + ['--work-dir', str(work_dir)], tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert 'none of its 2 virtual epochs pruned any sample' in err


def test_work_dir_invalid_kept_fraction(tmp_path, capsys):
    work_dir = measured_work_dir(tmp_path, [infobatch_line(201, 1, 1.5)])

    code, _ = run_plan(BASE_ARGS + ['--work-dir', str(work_dir)], tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert 'kept fraction 1.5 at iteration 201 is outside (0, 1]' in err


@pytest.mark.parametrize('flag, value, message', [
    ('--baseline-iters', '0', 'must be a positive integer, got 0'),
    ('--baseline-iters', '1.5', "must be an integer, got '1.5'"),
    ('--batch-size', '-2', 'must be a positive integer, got -2'),
    ('--num-samples', 'many', "must be an integer, got 'many'"),
    ('--prune-ratio', '1', 'must be in [0, 1), got 1'),
    ('--prune-ratio', '-0.1', 'must be in [0, 1), got -0.1'),
    ('--prune-ratio', 'nan', 'must be finite, got nan'),
    ('--delta', '0', 'must be in (0, 1], got 0'),
    ('--delta', '1.2', 'must be in (0, 1], got 1.2'),
    ('--well-learned-fraction', '1.1', 'must be in [0, 1], got 1.1'),
    ('--baseline-val-interval', '0', 'must be a positive integer, got 0'),
    ('--round-to', '0', 'must be a positive integer, got 0'),
])
def test_invalid_input_names_flag(capsys, flag, value, message):
    args = dict(zip(BASE_ARGS[::2], BASE_ARGS[1::2]))
    args[flag] = value
    argv = [item for pair in args.items() for item in pair]

    with pytest.raises(SystemExit) as exit_info:
        plan_schedule.main(argv)

    assert exit_info.value.code == 2
    assert f'argument {flag}: {message}' in capsys.readouterr().err


def test_missing_required_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plan_schedule.main(['--baseline-iters', '80000', '--batch-size', '16'])

    assert exit_info.value.code == 2
    assert '--num-samples' in capsys.readouterr().err


def test_json_contains_inputs(tmp_path):
    _, plan = run_plan(BASE_ARGS + ['--delta', '0.75'], tmp_path)

    assert plan['baseline_iters'] == 80000
    assert plan['batch_size'] == 16
    assert plan['num_samples'] == 20210
    assert plan['delta'] == 0.75
    assert plan['prune_ratio'] == 0.5
    assert plan['cfg_options'].startswith('--cfg-options train_cfg.max_iters=')


def test_cli_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'plan_schedule.py')] + BASE_ARGS,
        capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert 'InfoBatch max_iters: 62000' in result.stdout
