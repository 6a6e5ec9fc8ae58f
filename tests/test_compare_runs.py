"""Tests of tools/compare_runs.py on hand-made mmengine work dirs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workdir_factory import (infobatch_line, make_work_dir, train_line,
                             training_lines, val_line)

TOOLS_DIR = Path(__file__).resolve().parents[1] / 'tools'
sys.path.insert(0, str(TOOLS_DIR))

import compare_runs  # noqa: E402


def run_tool(argv, tmp_path):
    """Run main(argv) with --json and return (exit code, parsed JSON or None)."""
    json_path = tmp_path / 'rows.json'
    code = compare_runs.main(argv + ['--json', str(json_path)])
    document = json.loads(json_path.read_text()) if json_path.exists() else None
    return code, document


def rows_by_name(document):
    return {row['name']: row for row in document['runs']}


@pytest.fixture
def baseline_dir(tmp_path):
    """Baseline: 1000 iterations at 0.5 s each, mIoU 40.00 then 45.67."""
    lines = training_lines(1000) + [val_line(500, 40.0), val_line(1000, 45.67)]
    return make_work_dir(tmp_path, 'baseline', {'20240101_000000': lines})


def test_savings_and_reach_in_json(tmp_path, baseline_dir):
    lines = (training_lines(800, time=0.25)
             + [val_line(400, 45.0), val_line(600, 45.5), val_line(800, 45.9)])
    run_dir = make_work_dir(tmp_path, 'infobatch', {'20240102_000000': lines})

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(run_dir)], tmp_path)

    assert code == 0
    assert document['target_miou'] == pytest.approx(45.37)
    rows = rows_by_name(document)
    baseline, run = rows['baseline'], rows['infobatch']
    assert baseline['max_iter'] == 1000
    assert baseline['train_time_s'] == pytest.approx(500.0)
    assert baseline['reached_iter'] == 1000
    assert run['max_iter'] == 800
    assert run['final_miou'] == pytest.approx(45.9)
    assert run['final_iter'] == 800
    assert run['reached_iter'] == 600
    assert run['train_time_s'] == pytest.approx(200.0)
    assert run['iter_saving_pct'] == pytest.approx(20.0)
    assert run['time_saving_pct'] == pytest.approx(60.0)
    assert run['reach_saving_pct'] == pytest.approx(40.0)
    assert run['error'] is None


def test_reach_line_fewer_and_more(tmp_path, baseline_dir, capsys):
    early = make_work_dir(tmp_path, 'early', {'20240102_000000': (
        training_lines(500) + [val_line(500, 45.5)])})
    late = make_work_dir(tmp_path, 'late', {'20240102_000000': (
        training_lines(1200) + [val_line(1000, 45.0), val_line(1200, 45.4)])})

    code = compare_runs.main(['--baseline', str(baseline_dir),
                              '--run', str(early), '--run', str(late)])

    out = capsys.readouterr().out
    assert code == 0
    assert ('target 45.37 mIoU: early reached it at 500 iterations '
            '(50.0% fewer than baseline)') in out
    assert ('target 45.37 mIoU: late reached it at 1200 iterations '
            '(20.0% more than baseline)') in out
    assert 'baseline reached it at 1000 iterations (reference)' in out


def test_best_miou_tie_takes_first(tmp_path):
    lines = training_lines(900) + [val_line(300, 41.0), val_line(600, 42.5),
                                   val_line(900, 42.5)]
    baseline = make_work_dir(tmp_path, 'tied', {'20240101_000000': lines})

    code, document = run_tool(['--baseline', str(baseline)], tmp_path)

    row = document['runs'][0]
    assert code == 0
    assert row['best_miou'] == pytest.approx(42.5)
    assert row['best_iter'] == 600
    assert row['final_iter'] == 900


def test_target_never_reached(tmp_path, baseline_dir, capsys):
    lines = training_lines(800) + [val_line(400, 44.0), val_line(800, 45.3)]
    run_dir = make_work_dir(tmp_path, 'short', {'20240102_000000': lines})

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(run_dir)], tmp_path)

    out = capsys.readouterr().out
    row = rows_by_name(document)['short']
    assert code == 0
    assert row['reached_iter'] is None
    assert row['reach_saving_pct'] is None
    assert 'not reached' in out
    assert 'short did not reach it (best 45.30 @ 800)' in out


def test_target_equal_to_logged_miou_counts(tmp_path, baseline_dir):
    # 45.67 - 0.3 is 45.370000000000005 in floating point.
    lines = training_lines(600) + [val_line(600, 45.37)]
    run_dir = make_work_dir(tmp_path, 'exact', {'20240102_000000': lines})

    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--run', str(run_dir)], tmp_path)

    assert rows_by_name(document)['exact']['reached_iter'] == 600


def test_explicit_target_baseline_not_reached(tmp_path, baseline_dir, capsys):
    lines = training_lines(800) + [val_line(800, 47.0)]
    run_dir = make_work_dir(tmp_path, 'better', {'20240102_000000': lines})

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(run_dir),
                               '--target-miou', '46.5'], tmp_path)

    out = capsys.readouterr().out
    assert code == 0
    assert document['target_miou'] == 46.5
    assert document['target_source'] == '--target-miou'
    assert 'better reached it at 800 iterations (baseline did not reach it)' \
        in out


def test_tolerance_sets_target(tmp_path, baseline_dir):
    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--tolerance', '1.0'], tmp_path)

    assert document['target_miou'] == pytest.approx(44.67)


def test_resumed_run_merges_folders(tmp_path, capsys):
    # The first process saved a checkpoint at 500, logged up to 700 and stopped.
    # The resumed process restarts at 500, so its first train line is 600.
    first = (training_lines(700, time=0.5)
             + [val_line(500, 40.0), val_line(600, 99.0),
                infobatch_line(601, 3, 0.5)])
    second = (training_lines(1000, time=1.0, first_step=600)
              + [val_line(1000, 46.0), infobatch_line(601, 3, 0.8)])
    run_dir = make_work_dir(tmp_path, 'resumed', {
        '20240101_000000': first, '20240101_120000': second})

    code, document = run_tool(['--baseline', str(run_dir)], tmp_path)

    out = capsys.readouterr().out
    row = document['runs'][0]
    assert code == 0
    assert row['folders'] == ['20240101_000000', '20240101_120000']
    assert row['max_iter'] == 1000
    assert row['best_miou'] == pytest.approx(46.0)
    assert row['best_iter'] == 1000
    assert row['final_iter'] == 1000
    # 100..500 from the first folder at 0.5 s, 600..1000 from the second at 1 s.
    assert row['train_time_s'] == pytest.approx(5 * 100 * 0.5 + 5 * 100 * 1.0)
    assert '20240101_000000 (iterations 100-700)' in out
    assert '20240101_120000 (iterations 100-1000)' not in out
    assert 'merged folders 20240101_000000, 20240101_120000' in out


def test_resumed_run_keeps_checkpoint_eval(tmp_path):
    first = training_lines(700) + [val_line(500, 40.0), val_line(700, 41.0)]
    second = training_lines(1000, first_step=600) + [val_line(1000, 46.0)]
    run_dir = make_work_dir(tmp_path, 'resumed', {
        '20240101_000000': first, '20240101_120000': second})

    run = compare_runs.load_run(run_dir, 'resumed')

    assert run.val_miou == {500: 40.0, 1000: 46.0}
    assert sorted(run.train_times) == list(range(100, 1001, 100))


def test_resumed_run_later_infobatch_wins(tmp_path):
    first = training_lines(700) + [infobatch_line(601, 3, 0.5)]
    second = training_lines(1000, first_step=600) + [infobatch_line(601, 3, 0.8)]
    run_dir = make_work_dir(tmp_path, 'resumed', {
        '20240101_000000': first, '20240101_120000': second})

    run = compare_runs.load_run(run_dir, 'resumed')

    assert run.infobatch[601]['infobatch/kept_fraction'] == 0.8


def test_resumed_run_repeated_epoch_replaced(tmp_path):
    # The resumed process logs virtual epoch 3 again at its first iteration.
    first = training_lines(700) + [infobatch_line(401, 3, 0.5)]
    second = training_lines(1000, first_step=600) + [infobatch_line(501, 3, 0.8)]
    run_dir = make_work_dir(tmp_path, 'resumed', {
        '20240101_000000': first, '20240101_120000': second})

    run = compare_runs.load_run(run_dir, 'resumed')

    assert list(run.infobatch) == [501]
    assert run.infobatch[501]['infobatch/kept_fraction'] == 0.8


def test_restart_from_scratch_replaces_folder(tmp_path):
    first = training_lines(300) + [val_line(300, 99.0)]
    second = training_lines(500) + [val_line(500, 45.0)]
    run_dir = make_work_dir(tmp_path, 'restarted', {
        '20240101_000000': first, '20240102_000000': second})

    run = compare_runs.load_run(run_dir, 'restarted')

    assert run.val_miou == {500: 45.0}
    assert run.folders == ['20240101_000000', '20240102_000000']


def test_eval_only_folder_skipped(tmp_path, capsys):
    train = training_lines(500) + [val_line(500, 45.0)]
    evaluation = [val_line(0, 12.0)]
    run_dir = make_work_dir(tmp_path, 'with_eval', {
        '20240101_000000': train, '20240102_000000': evaluation})

    run = compare_runs.load_run(run_dir, 'with_eval')

    err = capsys.readouterr().err
    assert run.val_miou == {500: 45.0}
    assert run.folders == ['20240101_000000']
    assert '20240102_000000 has no train lines' in err


def test_non_timestamp_folders_ignored(tmp_path):
    run_dir = make_work_dir(tmp_path, 'mixed', {
        '20240101_000000': training_lines(200) + [val_line(200, 30.0)],
        'last_checkpoint_dir': training_lines(900) + [val_line(900, 50.0)]})

    run = compare_runs.load_run(run_dir, 'mixed')

    assert run.folders == ['20240101_000000']
    assert run.val_miou == {200: 30.0}


def test_run_folder_accepted_directly(tmp_path, baseline_dir):
    code, document = run_tool(
        ['--baseline', str(baseline_dir / '20240101_000000')], tmp_path)

    assert code == 0
    assert document['runs'][0]['max_iter'] == 1000


def test_malformed_lines_skipped_and_counted(tmp_path, baseline_dir, capsys):
    lines = (training_lines(400)
             + ['{"loss": 1.0, "step": 5',           # truncated write
                '[1, 2, 3]',                         # not an object
                '{"mIoU": 50.0}',                    # no step
                '{"mIoU": "high", "step": 300}',     # non-numeric metric
                '{"mIoU": NaN, "step": 350}',        # non-finite metric
                val_line(400, 45.5)])
    run_dir = make_work_dir(tmp_path, 'damaged', {'20240102_000000': lines})

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(run_dir)], tmp_path)

    err = capsys.readouterr().err
    row = rows_by_name(document)['damaged']
    assert code == 0
    assert row['num_malformed_lines'] == 5
    assert row['reached_iter'] == 400
    assert row['best_miou'] == pytest.approx(45.5)
    assert 'damaged: skipped 5 malformed lines' in err
    assert '(first at line 5)' in err


def test_nan_infobatch_value_dropped(tmp_path):
    lines = training_lines(400) + [
        '{"infobatch/threshold": NaN, "infobatch/kept_fraction": 0.7, '
        '"step": 201}']
    run = compare_runs.load_run(
        make_work_dir(tmp_path, 'ib', {'20240102_000000': lines}), 'ib')

    assert run.num_malformed == 0
    assert run.infobatch == {201: {'infobatch/kept_fraction': 0.7}}


def test_run_without_validation(tmp_path, baseline_dir, capsys):
    run_dir = make_work_dir(tmp_path, 'noval', {
        '20240102_000000': training_lines(600)})

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(run_dir)], tmp_path)

    captured = capsys.readouterr()
    row = rows_by_name(document)['noval']
    assert code == 0
    assert row['error'] is None
    assert row['max_iter'] == 600
    assert row['final_miou'] is None
    assert row['reached_iter'] is None
    assert row['iter_saving_pct'] == pytest.approx(40.0)
    assert 'noval: no validation lines with mIoU' in captured.err
    assert 'no validation' in captured.out


def test_missing_run_dir_reported(tmp_path, baseline_dir, capsys):
    good = make_work_dir(tmp_path, 'good', {'20240102_000000': (
        training_lines(500) + [val_line(500, 45.5)])})
    missing = tmp_path / 'missing'

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(missing), '--run', str(good)],
                              tmp_path)

    captured = capsys.readouterr()
    rows = rows_by_name(document)
    assert code == 0
    assert 'not found' in rows['missing']['error']
    assert rows['good']['reached_iter'] == 500
    assert f'error: run missing: work dir {missing} not found' in captured.err
    assert re.search(r'^missing +unusable: work dir', captured.out, re.M)


def test_run_dir_without_scalars(tmp_path, baseline_dir):
    empty = tmp_path / 'empty'
    (empty / '20240102_000000' / 'vis_data').mkdir(parents=True)

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--run', str(empty)], tmp_path)

    assert code == 0
    assert 'no YYYYMMDD_HHMMSS/vis_data/scalars.json' in \
        rows_by_name(document)['empty']['error']


def test_missing_baseline_fails(tmp_path, capsys):
    code = compare_runs.main(['--baseline', str(tmp_path / 'nope')])

    err = capsys.readouterr().err
    assert code == 1
    assert 'baseline nope is unusable' in err
    assert 'not found' in err


def test_baseline_without_validation_fails(tmp_path, capsys):
    baseline = make_work_dir(tmp_path, 'trainonly', {
        '20240101_000000': training_lines(500)})

    code = compare_runs.main(['--baseline', str(baseline)])

    err = capsys.readouterr().err
    assert code == 1
    assert 'no validation lines with mIoU' in err


def test_baseline_with_only_malformed_lines_fails(tmp_path, capsys):
    baseline = make_work_dir(tmp_path, 'garbage', {
        '20240101_000000': ['not json', '{"step": ']})

    code = compare_runs.main(['--baseline', str(baseline)])

    err = capsys.readouterr().err
    assert code == 1
    assert 'no train lines' in err


def test_images_from_samples_seen(tmp_path, baseline_dir):
    # 8 images per iteration: samples_seen at step s is (s - 1) x 8.
    lines = (training_lines(800) + [val_line(800, 45.5),
                                    infobatch_line(1, 0, 1.0, samples_seen=0),
                                    infobatch_line(126, 1, 0.8,
                                                   samples_seen=1000)])
    run_dir = make_work_dir(tmp_path, 'ib', {'20240102_000000': lines})

    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--run', str(run_dir)], tmp_path)

    rows = rows_by_name(document)
    assert rows['ib']['images_forwarded'] == 6400
    assert rows['baseline']['images_forwarded'] is None


def test_images_from_batch_size(tmp_path, baseline_dir):
    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--batch-size', '16'], tmp_path)

    row = document['runs'][0]
    assert row['images_forwarded'] == 16000
    assert row['images_source'] == 'iterations x --batch-size'


def test_batch_size_mismatch_warns(tmp_path, baseline_dir, capsys):
    lines = training_lines(800) + [infobatch_line(126, 1, 0.8,
                                                  samples_seen=1000)]
    run_dir = make_work_dir(tmp_path, 'ib', {'20240102_000000': lines})

    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--run', str(run_dir), '--batch-size', '4'],
                           tmp_path)

    assert rows_by_name(document)['ib']['images_forwarded'] == 6400
    assert '--batch-size 4 differs from the 8 images' in capsys.readouterr().err


def test_train_time_uses_log_interval(tmp_path):
    # Lines at 50, 100 and 300: 50 x 0.2 + 50 x 0.4 + 200 x 0.1 = 50 s.
    lines = [train_line(50, 0.2), train_line(100, 0.4), train_line(300, 0.1),
             val_line(300, 20.0)]
    baseline = make_work_dir(tmp_path, 'uneven', {'20240101_000000': lines})

    _, document = run_tool(['--baseline', str(baseline)], tmp_path)

    assert document['runs'][0]['train_time_s'] == pytest.approx(50.0)


def test_names_assigned_in_order(tmp_path, baseline_dir):
    run_dir = make_work_dir(tmp_path, 'run_a', {'20240102_000000': (
        training_lines(500) + [val_line(500, 45.0)])})
    run_b = make_work_dir(tmp_path, 'run_b', {'20240102_000000': (
        training_lines(500) + [val_line(500, 45.0)])})

    _, document = run_tool(['--baseline', str(baseline_dir),
                            '--run', str(run_dir), '--run', str(run_b),
                            '--name', 'full', '--name', 'ib0.5'], tmp_path)

    names = [row['name'] for row in document['runs']]
    assert names == ['full', 'ib0.5', 'run_b']


def test_too_many_names_rejected(tmp_path, baseline_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_runs.main(['--baseline', str(baseline_dir),
                           '--name', 'a', '--name', 'b'])

    assert exit_info.value.code == 2
    assert 'got 2 --name values for 1 runs' in capsys.readouterr().err


def test_negative_tolerance_rejected(tmp_path, baseline_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_runs.main(['--baseline', str(baseline_dir),
                           '--tolerance', '-1'])

    assert exit_info.value.code == 2
    assert 'argument --tolerance: must be >= 0, got -1' in \
        capsys.readouterr().err


def test_plot_file_created(tmp_path, baseline_dir):
    pytest.importorskip('matplotlib')
    lines = (training_lines(800) + [val_line(400, 45.0), val_line(800, 45.8),
                                    infobatch_line(1, 0, 1.0),
                                    infobatch_line(201, 1, 0.75),
                                    infobatch_line(401, 2, None)])
    run_dir = make_work_dir(tmp_path, 'ib', {'20240102_000000': lines})
    plot_path = tmp_path / 'curves.png'

    code = compare_runs.main(['--baseline', str(baseline_dir),
                              '--run', str(run_dir),
                              '--plot', str(plot_path)])

    assert code == 0
    assert plot_path.read_bytes().startswith(b'\x89PNG')


def test_pruned_fraction_series(tmp_path):
    lines = training_lines(600) + [infobatch_line(1, 0, 1.0),
                                   infobatch_line(201, 1, 0.75),
                                   infobatch_line(401, 2, None,
                                                  num_planned=60,
                                                  num_pruned=40)]
    run = compare_runs.load_run(
        make_work_dir(tmp_path, 'ib', {'20240102_000000': lines}), 'ib')

    steps, fractions = compare_runs.pruned_fraction_series(run)

    assert steps == [1, 201, 401]
    assert fractions == pytest.approx([0.0, 0.25, 0.4])


def test_cli_subprocess(tmp_path, baseline_dir):
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'compare_runs.py'),
         '--baseline', str(baseline_dir)],
        capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert 'target mIoU: 45.37' in result.stdout
    assert re.search(r'^baseline +1000 ', result.stdout, re.M)


def test_plot_without_matplotlib(tmp_path, baseline_dir, monkeypatch, capsys):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    plot_path = tmp_path / 'curves.png'

    code, document = run_tool(['--baseline', str(baseline_dir),
                               '--plot', str(plot_path)], tmp_path)

    captured = capsys.readouterr()
    assert code == 1
    assert not plot_path.exists()
    assert document['runs'][0]['max_iter'] == 1000
    assert '--plot needs matplotlib' in captured.err
    assert 'target mIoU: 45.37' in captured.out


def test_unwritable_json_fails(tmp_path, baseline_dir, capsys):
    code = compare_runs.main(['--baseline', str(baseline_dir),
                              '--json', str(tmp_path)])

    assert code == 1
    assert f'cannot write --json {tmp_path}' in capsys.readouterr().err
