"""Multi-process InfoBatch: score sync, pruning coverage, launchers, resume.

The end-to-end tests start real gloo ranks on CPU through
``tools/dist_train.sh`` (torchrun), ``tools/slurm_train.sh`` (with a stand-in
``srun`` that starts the tasks on this host) or ``tools/train.py``, with the
real Runner, DataLoader workers and CamVid images. ``dist_probe`` (loaded by
the configs) writes what each rank trained on to ``probe_rank{rank}.json``.
All sockets use 127.0.0.1.
"""
import json
import math
import os
import os.path as osp
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.multiprocessing as mp

from e2e import epoch_lines, load_checkpoint
from mmib.core.stream import PrunedStream
from mmib.hooks.sync import CHECKSUM_FIELDS, stream_checksum

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS_DIR = osp.join(REPO_ROOT, 'tests')
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'fcn_r18-mini_infobatch_cpu-demo.py')
DIST_TRAIN = osp.join(REPO_ROOT, 'tools', 'dist_train.sh')
SLURM_TRAIN = osp.join(REPO_ROOT, 'tools', 'slurm_train.sh')
TRAIN_TOOL = osp.join(REPO_ROOT, 'tools', 'train.py')
RUN_TIMEOUT = 180
MAX_ITERS = 20

# A 2-rank config: 64x64 crops, batch 2 per rank, one DataLoader worker per
# rank, no validation, a checkpoint every 8 iterations.
CONFIG_TEMPLATE = '''
_base_ = {demo!r}
custom_imports = dict(imports=['mmib', 'dist_probe'], allow_failed_imports=False)
crop_size = (64, 64)
max_iters = {max_iters}
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(320, 80), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
image_dataset = dict(
    type='ADE20KDataset',
    data_root='unset',
    data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
    pipeline=train_pipeline{indices})
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(_delete_=True, **{dataset}))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=4, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8, max_keep_ckpts=4),
    visualization=dict(type='SegVisualizationHook', draw=False))
custom_hooks = [
    dict(type='InfoBatchHook', consistency_check_interval={check_interval}),
    dict(type='InfoBatchProbeHook'{probe_args}),
    dict(type='InfoBatchScoreProbeHook'),
]
'''


def write_config(path, max_iters=MAX_ITERS, indices=23, repeat=None, check_interval=100,
                 probe_args='', extra=''):
    """Write a test config; ``repeat`` wraps the dataset in a RepeatDataset."""
    dataset = ('image_dataset' if repeat is None
               else f"dict(type='RepeatDataset', times={repeat}, dataset=image_dataset)")
    text = CONFIG_TEMPLATE.format(
        demo=DEMO_CONFIG, max_iters=max_iters,
        indices='' if indices is None else f', indices={indices}',
        dataset=dataset, check_interval=check_interval,
        probe_args=probe_args and ', ' + probe_args)
    path.write_text(text + textwrap.dedent(extra))
    return str(path)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def launch_env(**overrides):
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
        MASTER_ADDR='127.0.0.1', GLOO_SOCKET_IFNAME='lo',
        PYTHONPATH=os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get('PYTHONPATH')])))
    env.update(overrides)
    return env


def descendant_pids(root_pid):
    """Return the pids of every live descendant of ``root_pid`` (Linux /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as file:
                fields = file.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, pending = [], [root_pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def run_command(command, env, timeout=RUN_TIMEOUT):
    """Run a launcher and return (exit code, output); kill its processes on timeout.

    torchrun starts each rank in a new session, so the ranks are found
    through their parent links rather than through the process group.
    """
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in descendant_pids(process.pid) + [process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        output, _ = process.communicate(timeout=30)
        raise AssertionError(f'{" ".join(command[:2])} timed out after {timeout} s (hang?):\n'
                             + output[-6000:])
    return process.returncode, output


def require_success(returncode, output):
    if returncode != 0:
        raise AssertionError(f'training failed (exit {returncode}):\n' + output[-8000:])


def read_probes(work_dir, world_size):
    probes = []
    for rank in range(world_size):
        with open(osp.join(work_dir, f'probe_rank{rank}.json')) as file:
            probes.append(json.load(file))
    return probes


# ------------------------------------------------------- record analysis
def consumed_positions(probes, stop_iter=None):
    """Map global stream position -> (index, weight, virtual epoch).

    Rank ``r`` of ``W`` trains positions ``start + r + W * k`` of a global
    batch; positions seen twice must carry the same entry.
    """
    entries = {}
    for probe in probes:
        rank, world_size = probe['rank'], probe['world_size']
        for batch in probe['batches']:
            if stop_iter is not None and batch['iter'] >= stop_iter:
                continue
            for k, entry in enumerate(zip(batch['indices'], batch['weights'],
                                          batch['virtual_epochs'])):
                position = batch['start'] + rank + world_size * k
                assert entries.setdefault(position, entry) == entry, position
    return entries


def latest_plans(*probe_groups):
    """Return virtual epoch -> plan; later runs replace plans they re-recorded.

    A resumed run keeps the interrupted virtual epoch without its trained
    head (a checkpoint keeps only untrained positions, so its plan starts
    later); the earlier run's full plan is kept for that epoch.
    """
    plans = {}
    for probes in probe_groups:
        for plan in probes[0]['plans']:
            known = plans.get(plan['virtual_epoch'])
            if known is not None and plan['start'] > known['start']:
                continue
            plans[plan['virtual_epoch']] = plan
    return plans


def check_plans_match_across_ranks(probes):
    reference = probes[0]['plans']
    for probe in probes[1:]:
        assert probe['plans'] == reference, f'rank {probe["rank"]} planned differently'


def check_epoch_coverage(entries, plans):
    """Check each fully trained virtual epoch; return their plans.

    Within one virtual epoch every kept sample is trained exactly once over
    all ranks (at the position the plan gives it), no pruned sample is
    trained, and its weight is the plan's.
    """
    trained_until = max(entries) + 1
    assert sorted(entries) == list(range(min(entries), trained_until)), 'gap in stream'
    complete = []
    for epoch, plan in sorted(plans.items()):
        stop = plan['start'] + len(plan['order'])
        if plan['start'] < min(entries) or stop > trained_until:
            continue
        order = plan['order']
        assert len(set(order)) == len(order), f'virtual epoch {epoch} repeats a sample'
        seen = []
        for offset, (index, upweighted) in enumerate(zip(order, plan['upweighted'])):
            got_index, got_weight, got_epoch = entries[plan['start'] + offset]
            assert got_epoch == epoch
            assert got_index == index, (epoch, offset)
            expected = plan['well_learned_weight'] if upweighted else 1.0
            assert got_weight == pytest.approx(expected, rel=1e-6), (epoch, index)
            seen.append(got_index)
        assert sorted(seen) == sorted(order)
        epoch_entries = [e for e in entries.values() if e[2] == epoch]
        assert len(epoch_entries) == len(order), f'virtual epoch {epoch} trained extra samples'
        # A plan cut at the annealing boundary keeps only its first positions.
        assert len(order) + plan['num_pruned'] <= plan['num_samples']
        complete.append(plan)
    return complete


def rebuild_score_table(probes, num_samples, initial_bits=None):
    """Replay every rank's per-image scores as InfoBatchHook applies them."""
    table = torch.full((num_samples,), math.nan)
    if initial_bits is not None:
        table = torch.tensor(initial_bits, dtype=torch.int32).view(torch.float32).clone()
    iterations = sorted({b['iter'] for p in probes for b in p['batches']})
    for iteration in iterations:
        for probe in sorted(probes, key=lambda p: p['rank']):
            batch = next(b for b in probe['batches'] if b['iter'] == iteration)
            scores = torch.tensor(batch['score_bits'], dtype=torch.int32).view(torch.float32)
            for index, score in zip(batch['scored_indices'], scores.tolist()):
                if math.isfinite(score):
                    table[index] = score
    return table.view(torch.int32).tolist()


def check_scores_in_sync(probes, initial_bits=None):
    reference = probes[0]['score_bits']
    for probe in probes[1:]:
        assert probe['score_bits'] == reference, f'rank {probe["rank"]} score table differs'
    rebuilt = rebuild_score_table(probes, probes[0]['num_samples'], initial_bits)
    assert rebuilt == reference
    for probe in probes:
        for batch in probe['batches']:
            assert batch['model_indices'] == batch['indices'], batch['iter']
            assert batch['scored_indices'] == batch['indices'], batch['iter']
            assert batch['scored_index_dtype'] == 'torch.int64'


# ------------------------------------------------------------ fixtures
@pytest.fixture(scope='module')
def two_rank_run(camvid_root, tmp_path_factory):
    """20 iterations on 2 ranks over 23 images, launched by dist_train.sh."""
    root = tmp_path_factory.mktemp('two_ranks')
    config = write_config(root / 'config.py')
    work_dir = root / 'work'
    returncode, output = run_command(
        ['bash', DIST_TRAIN, config, '2', '--work-dir', str(work_dir),
         '--data-root', camvid_root],
        launch_env(PORT=str(free_port())))
    require_success(returncode, output)
    return dict(config=config, data_root=camvid_root, work_dir=work_dir, output=output,
                probes=read_probes(work_dir, 2))


def fake_srun(directory):
    """Write an ``srun`` stand-in that starts ``--ntasks`` local tasks."""
    script = directory / 'srun'
    script.write_text(textwrap.dedent('''\
        #!/usr/bin/env bash
        # Test stand-in for slurm's srun: logs its arguments, then starts
        # --ntasks copies of the command on this host with SLURM_* set.
        echo "$@" > "$(dirname "$0")/srun_args.txt"
        ntasks=1
        while [ $# -gt 0 ]; do
            case "$1" in
                --ntasks=*) ntasks=${1#--ntasks=} ;;
                --*) ;;
                *) break ;;
            esac
            shift
        done
        pids=()
        for ((task = 0; task < ntasks; task++)); do
            SLURM_PROCID=$task SLURM_LOCALID=$task SLURM_NTASKS=$ntasks \\
                SLURM_NODELIST=localhost "$@" &
            pids+=($!)
        done
        status=0
        for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
        exit $status
        '''))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


# --------------------------------------------------------------- tests
@pytest.mark.slow
def test_two_ranks_hold_identical_scores(two_rank_run):
    probes = two_rank_run['probes']
    assert [p['world_size'] for p in probes] == [2, 2]
    assert all(len(p['batches']) == MAX_ITERS for p in probes)
    check_scores_in_sync(probes)
    check_plans_match_across_ranks(probes)


@pytest.mark.slow
def test_two_ranks_partition_virtual_epochs(two_rank_run):
    probes = two_rank_run['probes']
    entries = consumed_positions(probes)
    assert len(entries) == MAX_ITERS * 2 * 2
    complete = check_epoch_coverage(entries, latest_plans(probes))
    assert len(complete) >= 3
    # 23 samples in global batches of 4: virtual epochs end mid-batch, and
    # one rank trains more samples of an epoch than the other.
    assert any((plan['start'] + len(plan['order'])) % 4 != 0 for plan in complete)
    pruned = [plan for plan in complete if plan['num_pruned'] > 0
              and len(plan['order']) + plan['num_pruned'] == plan['num_samples']]
    assert len(pruned) >= 2
    assert any(any(plan['upweighted']) for plan in pruned)


@pytest.mark.slow
def test_two_ranks_log_pruning(two_rank_run):
    rows = epoch_lines(two_rank_run['output'])
    assert [row['virtual_epoch'] for row in rows] == sorted({r['virtual_epoch'] for r in rows})
    assert len([row for row in rows if row['num_pruned'] > 0 and not row['annealed']]) >= 2
    checkpoint = load_checkpoint(osp.join(two_rank_run['work_dir'], 'iter_8.pth'))
    assert checkpoint['infobatch']['samples_per_iter'] == 4
    assert checkpoint['infobatch']['stream']['consumed_position'] == 32


@pytest.mark.slow
def test_resume_two_ranks_under_slurm(two_rank_run, tmp_path):
    """Resume the 2-rank run at iteration 8 with 2 slurm tasks."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake_srun(bin_dir)
    work_dir = tmp_path / 'work'
    checkpoint = osp.join(two_rank_run['work_dir'], 'iter_8.pth')
    env = launch_env(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                     MASTER_PORT=str(free_port()), GRES='', SRUN_ARGS='--time=5')
    returncode, output = run_command(
        ['bash', SLURM_TRAIN, 'cpu', 'mmib-resume', two_rank_run['config'], '2',
         '--work-dir', str(work_dir), '--data-root', two_rank_run['data_root'],
         '--resume', '--cfg-options', f'load_from={checkpoint}'],
        env)
    require_success(returncode, output)
    srun_args = (bin_dir / 'srun_args.txt').read_text().split()
    assert '--partition=cpu' in srun_args and '--job-name=mmib-resume' in srun_args
    assert '--ntasks=2' in srun_args and '--time=5' in srun_args
    assert not any(arg.startswith('--gres') for arg in srun_args)
    assert 'InfoBatch restored' in output

    resumed = read_probes(work_dir, 2)
    assert [p['start_iter'] for p in resumed] == [8, 8]
    check_plans_match_across_ranks(resumed)
    saved = load_checkpoint(checkpoint)['infobatch']['stream']
    check_scores_in_sync(resumed, initial_bits=saved['scores'].view(torch.int32).tolist())

    # Plans saved in the checkpoint are replayed unchanged, so every position
    # they cover gets the sample and weight the uninterrupted run trained.
    original = consumed_positions(two_rank_run['probes'])
    after = consumed_positions(resumed)
    saved_end = max(plan['start'] + plan['plan']['order'].numel() for plan in saved['plans'])
    replayed = [position for position in after if position < saved_end]
    assert replayed and min(after) == 32
    assert all(after[position] == original[position] for position in replayed)

    before = consumed_positions(two_rank_run['probes'], stop_iter=8)
    combined = {**before, **after}
    complete = check_epoch_coverage(combined, latest_plans(two_rank_run['probes'], resumed))
    assert any(plan['start'] < 32 < plan['start'] + len(plan['order']) for plan in complete)


@pytest.mark.slow
def test_resume_on_one_rank(two_rank_run, camvid_root, tmp_path):
    """A 2-rank checkpoint resumed by one process continues the same stream."""
    work_dir = tmp_path / 'work'
    checkpoint = osp.join(two_rank_run['work_dir'], 'iter_8.pth')
    returncode, output = run_command(
        [sys.executable, TRAIN_TOOL, two_rank_run['config'], '--work-dir', str(work_dir),
         '--data-root', camvid_root, '--resume', '--cfg-options', f'load_from={checkpoint}'],
        launch_env())
    require_success(returncode, output)
    assert ('InfoBatch checkpoint was trained with 4 samples per iteration; this run '
            'takes 2 (2 per rank x 1 ranks)') in output
    (resumed,) = read_probes(work_dir, 1)
    assert resumed['world_size'] == 1 and resumed['start_iter'] == 8
    saved = load_checkpoint(checkpoint)['infobatch']['stream']
    check_scores_in_sync([resumed], initial_bits=saved['scores'].view(torch.int32).tolist())

    # The global batch shrinks from 4 to 2 samples; the stream continues at
    # global position 32 and the interrupted virtual epoch is completed.
    after = consumed_positions([resumed])
    assert sorted(after) == list(range(32, 32 + (MAX_ITERS - 8) * 2))
    before = consumed_positions(two_rank_run['probes'], stop_iter=8)
    complete = check_epoch_coverage({**before, **after},
                                    latest_plans(two_rank_run['probes'], [resumed]))
    assert any(plan['start'] < 32 < plan['start'] + len(plan['order']) for plan in complete)


@pytest.mark.slow
def test_bf16_autocast_keeps_large_indices(camvid_root, tmp_path):
    """4,404 samples (CamVid x 12) under CPU bf16 autocast on 2 ranks."""
    config = write_config(
        tmp_path / 'config.py', max_iters=6, indices=None, repeat=12,
        extra='''
        optim_wrapper = dict(_delete_=True, type='CPUAutocastOptimWrapper', dtype='bfloat16',
                             optimizer=dict(type='SGD', lr=0.02, momentum=0.9,
                                            weight_decay=0.0005))
        ''')
    work_dir = tmp_path / 'work'
    returncode, output = run_command(
        ['bash', DIST_TRAIN, config, '2', '--work-dir', str(work_dir), '--data-root', camvid_root],
        launch_env(PORT=str(free_port())))
    require_success(returncode, output)
    probes = read_probes(work_dir, 2)
    assert probes[0]['num_samples'] == 367 * 12
    assert all(p['decode_output_dtype'] == 'torch.bfloat16' for p in probes)
    check_scores_in_sync(probes)
    scored = [i for p in probes for b in p['batches'] for i in b['scored_indices']]
    # fp16 holds only even integers in [2048, 4096) and bf16 only multiples of 16.
    assert any(index > 2048 and index % 2 == 1 for index in scored)
    table = torch.tensor(probes[0]['score_bits'], dtype=torch.int32).view(torch.float32)
    assert int(torch.isfinite(table).sum()) == len(set(scored))


@pytest.mark.slow
def test_dataset_smaller_than_global_batch(camvid_root, tmp_path):
    """3 images, global batch 4: every batch spans two virtual epochs."""
    config = write_config(tmp_path / 'config.py', max_iters=8, indices=3)
    work_dir = tmp_path / 'work'
    returncode, output = run_command(
        ['bash', DIST_TRAIN, config, '2', '--work-dir', str(work_dir), '--data-root', camvid_root],
        launch_env(PORT=str(free_port())))
    require_success(returncode, output)
    probes = read_probes(work_dir, 2)
    check_scores_in_sync(probes)
    check_plans_match_across_ranks(probes)
    entries = consumed_positions(probes)
    assert sorted(entries) == list(range(8 * 4))
    complete = check_epoch_coverage(entries, latest_plans(probes))
    assert len(complete) >= 8
    assert any(plan['num_pruned'] > 0 for plan in complete)
    for probe in probes:
        assert all(len(set(batch['virtual_epochs'])) <= 2 for batch in probe['batches'])
        assert any(len(set(batch['virtual_epochs'])) == 2 for batch in probe['batches'])


@pytest.mark.slow
def test_corrupted_rank_stops_training(camvid_root, tmp_path):
    config = write_config(tmp_path / 'config.py', max_iters=6, check_interval=1,
                          probe_args='corrupt_rank=1, corrupt_after_iter=1')
    returncode, output = run_command(
        ['bash', DIST_TRAIN, config, '2', '--work-dir', str(tmp_path / 'work'),
         '--data-root', camvid_root],
        launch_env(PORT=str(free_port())), timeout=180)
    assert returncode != 0
    assert ('InfoBatch state differs across ranks after iteration 3 (runner.iter 2): '
            'ranks [1] disagree with rank 0 on the score table') in output
    assert 'Iter(train) [6/6]' not in output


# ----------------------------------------- collectives without the Runner
def _collective_worker(rank, world_size, store_path, result_path):
    import torch.distributed as torch_dist

    from mmib.hooks.sync import check_consistency, gather_scores

    torch_dist.init_process_group('gloo', init_method=f'file://{store_path}',
                                  rank=rank, world_size=world_size)
    results = {}
    try:
        # Indices beyond float16 (2**11), float32 (2**24) and int32 (2**31)
        # precision, with bf16 scores from an autocast region.
        large = [2**11 + 1, 2**24 + 1, 2**31 + 7, 2**53 + 3]
        indices = torch.tensor([large[rank * 2], large[rank * 2 + 1]], dtype=torch.int64)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            scores = torch.tensor([1.5 + rank, 2.25 + rank]).to(torch.bfloat16)
        if rank == 1:
            indices, scores = indices[:1], scores[:1]  # a shorter batch
        gathered, gathered_scores = gather_scores(indices, scores, capacity=2)
        results['indices'] = gathered.tolist()
        results['index_dtype'] = str(gathered.dtype)
        results['scores'] = gathered_scores.tolist()

        stream = PrunedStream(50, 0.5, 0.875, seed=0)
        stream.take(0, 8)
        stream.update_scores(torch.arange(8), torch.linspace(0.1, 0.8, 8))
        check_consistency(stream, iteration=4)
        results['equal_state_passed'] = True
        if rank == 1:
            stream.scores[3] = 9.0
        try:
            check_consistency(stream, iteration=4)
        except RuntimeError as error:
            results['error'] = str(error)
    finally:
        torch_dist.destroy_process_group()
    with open(result_path.format(rank=rank), 'w') as file:
        json.dump(results, file)


@pytest.mark.slow
def test_gather_and_check_on_two_processes(tmp_path):
    result_path = str(tmp_path / 'rank{rank}.json')
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    context = mp.start_processes(
        _collective_worker, args=(2, str(tmp_path / 'store'), result_path),
        nprocs=2, join=False, start_method='spawn')
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError('collective workers did not finish within 120 s (hang?)')
    results = []
    for rank in range(2):
        with open(result_path.format(rank=rank)) as file:
            results.append(json.load(file))
    for result in results:
        assert result['indices'] == [2**11 + 1, 2**24 + 1, 2**31 + 7]
        assert result['index_dtype'] == 'torch.int64'
        assert result['scores'] == [1.5, 2.25, 2.5]
        assert result['equal_state_passed']
        assert result['error'].startswith(
            'InfoBatch state differs across ranks after iteration 5 (runner.iter 4): '
            'ranks [1] disagree with rank 0 on the score table.')


# ------------------------------------------------------- in-process units
def test_checksum_tracks_every_field():
    stream = PrunedStream(30, 0.5, 0.875, seed=0)
    stream.set_clock(0, 100, 4)
    stream.take(0, 4)
    stream.update_scores(torch.arange(4), torch.tensor([0.1, 0.2, 0.3, 0.4]))
    base = stream_checksum(stream)
    assert base.dtype == torch.int64 and base.numel() == len(CHECKSUM_FIELDS)

    changed = {}
    copy = PrunedStream(30, 0.5, 0.875, seed=0)
    copy.load_state_dict(stream.state_dict())
    copy.anneal_position = stream.anneal_position
    assert torch.equal(stream_checksum(copy), base)

    copy.scores[[0, 1]] = copy.scores[[1, 0]].clone()  # swap two scores
    changed['score table'] = stream_checksum(copy)
    copy.load_state_dict(stream.state_dict())
    copy.anneal_position = stream.anneal_position
    order = copy.plans[0].plan.order
    order[[5, 6]] = order[[6, 5]].clone()  # swap two planned samples
    changed['virtual-epoch plans'] = stream_checksum(copy)
    copy.load_state_dict(stream.state_dict())
    copy.consume(4)
    changed['consumed position'] = stream_checksum(copy)
    for name, checksum in changed.items():
        differing = [CHECKSUM_FIELDS[i] for i in range(len(CHECKSUM_FIELDS))
                     if checksum[i] != base[i]]
        assert name in differing, name


def test_slurm_env_from_launcher():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    try:
        from train import torch_env_from_launcher
    finally:
        sys.path.pop(0)
    env = torch_env_from_launcher('slurm', dict(
        SLURM_PROCID='3', SLURM_NTASKS='16', SLURM_LOCALID='3', SLURM_NODELIST='node[1-2]',
        MASTER_ADDR='10.0.0.1'))
    assert env == dict(RANK='3', WORLD_SIZE='16', LOCAL_RANK='3', MASTER_PORT='29500')
    env = torch_env_from_launcher('mpi', dict(
        OMPI_COMM_WORLD_RANK='1', OMPI_COMM_WORLD_SIZE='2', OMPI_COMM_WORLD_LOCAL_RANK='1',
        MASTER_ADDR='10.0.0.1', MASTER_PORT='1234'))
    assert env == dict(RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', MASTER_PORT='1234')
    with pytest.raises(KeyError, match='SLURM_NTASKS'):
        torch_env_from_launcher('slurm', dict(SLURM_PROCID='0', SLURM_NODELIST='n1'))


def test_launch_scripts_reject_bad_gpus():
    result = subprocess.run(['bash', DIST_TRAIN, 'config.py', 'two'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2
    assert "GPUS must be a positive integer (processes on this node), got 'two'" in result.stderr
    result = subprocess.run(['bash', SLURM_TRAIN, 'partition'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2 and 'usage:' in result.stderr
