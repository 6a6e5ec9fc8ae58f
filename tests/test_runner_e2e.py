"""End-to-end runs of the real Runner, DataLoader workers and CamVid images."""
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from e2e import (REPO_ROOT, TINY_CONFIG, epoch_lines, load_checkpoint, run_train, scalars,
                 subprocess_env, train_command)

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def finished_run(camvid_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('demo_tiny')
    result = run_train(TINY_CONFIG, work_dir, camvid_root)
    return work_dir, result.stdout


def test_demo_prunes_and_logs(finished_run):
    _, output = finished_run
    rows = epoch_lines(output)
    assert rows[0]['num_pruned'] == 0
    assert rows[0]['num_scored'] == 0
    pruned = [row for row in rows if row['num_pruned'] > 0]
    assert len(pruned) >= 2
    assert all(row['num_planned'] + row['num_pruned'] <= row['num_samples'] for row in pruned)
    assert rows[-1]['annealed']
    # 40 iterations anneal from iteration 35 (position 140), inside a pruned pass.
    cut = [row for row in rows if row['cut']]
    assert len(cut) == 1
    assert cut[0]['num_planned'] < cut[0]['num_samples'] - cut[0]['num_pruned']
    assert 'final mIoU:' in output


def test_demo_writes_infobatch_scalars(finished_run):
    work_dir, _ = finished_run
    lines = scalars(work_dir)
    pruned = [line['infobatch/num_pruned'] for line in lines if 'infobatch/num_pruned' in line]
    assert max(pruned) > 0
    assert any('mIoU' in line for line in lines)


def test_checkpoint_holds_infobatch_state(finished_run):
    work_dir, _ = finished_run
    checkpoint = load_checkpoint(osp.join(work_dir, 'iter_40.pth'))
    state = checkpoint['infobatch']
    assert state['trained_iters'] == 40
    assert state['samples_per_iter'] == 4
    stream = state['stream']
    assert stream['consumed_position'] == 160
    assert stream['num_samples'] == 40
    assert torch.isfinite(stream['scores']).all()
    assert stream['cumulative_pruned'] > 0
    assert isinstance(stream['generator_state'], torch.Tensor)


STOCK_TINY = textwrap.dedent('''
    _base_ = '{tiny}'
    model = dict(type='EncoderDecoder')
    train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True))
    custom_hooks = []
''')


def test_prune_ratio_zero_matches_stock_training(camvid_root, tmp_path):
    # Two persistent workers read ahead before InfoBatchHook configures the
    # sampler; the run must still match stock training loss for loss.
    common = ['train_cfg.max_iters=12', 'param_scheduler.0.end=12', 'train_cfg.val_interval=100',
              'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100']
    run_train(TINY_CONFIG, tmp_path / 'infobatch', camvid_root,
              cfg_options=common + ['train_dataloader.sampler.prune_ratio=0.0'])
    stock_config = tmp_path / 'stock.py'
    stock_config.write_text(STOCK_TINY.format(tiny=TINY_CONFIG))
    run_train(str(stock_config), tmp_path / 'stock', camvid_root, cfg_options=common)
    ours = [line['loss'] for line in scalars(tmp_path / 'infobatch') if 'loss' in line]
    stock = [line['loss'] for line in scalars(tmp_path / 'stock') if 'loss' in line]
    assert len(ours) == 12
    assert ours == stock


def _wait_for(path, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if osp.exists(path) and process.poll() is None:
            return
        if process.poll() is not None:
            raise AssertionError(f'training exited early with {process.returncode}:\n'
                                 + process.stdout.read()[-4000:])
        time.sleep(0.2)
    raise AssertionError(f'{path} did not appear within {timeout} s')


def test_sigkill_then_resume_continues(camvid_root, tmp_path):
    work_dir = tmp_path / 'killed'
    options = ['default_hooks.checkpoint.interval=10', 'train_cfg.val_interval=100']
    process = subprocess.Popen(
        train_command(TINY_CONFIG, work_dir, camvid_root, cfg_options=options),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env=subprocess_env())
    try:
        _wait_for(work_dir / 'iter_20.pth', process, timeout=300)
        time.sleep(1.0)  # let training go on past the checkpoint
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = process.stdout.read()
    assert process.returncode == -signal.SIGKILL
    assert not (work_dir / 'iter_40.pth').exists()

    last = (work_dir / 'last_checkpoint').read_text().strip()
    saved = load_checkpoint(last)['infobatch']
    resumed = run_train(TINY_CONFIG, work_dir, camvid_root, '--resume', cfg_options=options)
    output = resumed.stdout
    assert 'InfoBatch restored' in output
    restored_position = saved['stream']['consumed_position']
    assert f'global position {restored_position} samples' in output

    epochs_before = [row['virtual_epoch'] for row in epoch_lines(before)]
    epochs_after = [row['virtual_epoch'] for row in epoch_lines(output)]
    assert epochs_after and min(epochs_after) > 0
    # The restored scores prune the virtual epochs after the resume at once.
    assert any(row['num_pruned'] > 0 for row in epoch_lines(output) if not row['annealed'])
    assert min(epochs_after) >= max(e for e in epochs_before if e <= min(epochs_after))
    final = load_checkpoint(work_dir / 'iter_40.pth')['infobatch']['stream']
    assert final['consumed_position'] == 160
    # Scores restored from the checkpoint are kept where no new loss arrived.
    assert torch.isfinite(final['scores']).all()


def test_load_from_starts_fresh_state(finished_run, camvid_root, tmp_path):
    source, _ = finished_run
    result = run_train(TINY_CONFIG, tmp_path / 'finetune', camvid_root, cfg_options=[
        f"load_from={osp.join(source, 'iter_40.pth')}", 'train_cfg.max_iters=12',
        'param_scheduler.0.end=12', 'train_cfg.val_interval=100'])
    assert 'InfoBatch starts fresh' in result.stdout
    rows = epoch_lines(result.stdout)
    assert rows[0]['virtual_epoch'] == 0 and rows[0]['num_scored'] == 0


def test_resume_without_replaying_data(finished_run, camvid_root, tmp_path):
    """resume=True in the config resumes; the sampler is not advanced twice.

    mmengine replays ``iter`` batches on resume without calling hooks. Had
    those batches come from the sampler, the FIFO would contain samples the
    model never saw, so the sample-order check would fail. The consumed
    position at the end shows that the stream advanced once per iteration.
    """
    source, _ = finished_run
    work_dir = tmp_path / 'resume_no_replay'
    work_dir.mkdir()
    checkpoint = osp.join(source, 'iter_20.pth')
    result = run_train(TINY_CONFIG, work_dir, camvid_root, cfg_options=[
        'resume=True', f'load_from={checkpoint}', 'train_cfg.max_iters=25',
        'param_scheduler.0.end=40', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=25'])
    assert 'InfoBatch restored' in result.stdout
    assert 'global position 80 samples' in result.stdout
    trained = [line for line in scalars(work_dir) if 'loss' in line]
    assert [line['iter'] for line in trained] == [25]
    final = load_checkpoint(work_dir / 'iter_25.pth')['infobatch']['stream']
    assert final['consumed_position'] == 25 * 4


SAMPLER_WITHOUT_HOOK = textwrap.dedent('''
    _base_ = '{tiny}'
    custom_hooks = []
''')
SAMPLER_WITHOUT_SEGMENTOR = textwrap.dedent('''
    _base_ = '{tiny}'
    model = dict(type='EncoderDecoder')
''')
HOOK_WITHOUT_SAMPLER = textwrap.dedent('''
    _base_ = '{tiny}'
    train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True))
''')


@pytest.mark.parametrize('text,message', [
    (SAMPLER_WITHOUT_HOOK, "custom_hooks = [dict(type='InfoBatchHook')]"),
    (SAMPLER_WITHOUT_SEGMENTOR, "model = dict(type='InfoBatchEncoderDecoder')"),
    (HOOK_WITHOUT_SAMPLER, "sampler=dict(type='InfiniteInfoBatchSampler')"),
])
def test_incomplete_setup_fails_before_training(camvid_root, tmp_path, text, message):
    config = tmp_path / 'incomplete.py'
    config.write_text(text.format(tiny=TINY_CONFIG))
    result = run_train(str(config), tmp_path / 'work', camvid_root, check=False,
                       cfg_options=['train_cfg.max_iters=3'])
    assert result.returncode != 0
    assert message in result.stdout
    assert 'Iter(train) [' not in result.stdout


STOCK_USER_CONFIG = textwrap.dedent('''
    _base_ = 'mmseg::{base}'

    # The four mmib lines.
    custom_imports = dict(imports=['mmib'], allow_failed_imports=False)
    model = dict(type='InfoBatchEncoderDecoder')
    train_dataloader = dict(sampler=dict(type='InfiniteInfoBatchSampler'))
    custom_hooks = [dict(type='InfoBatchHook')]

    # Test-only: offline, small and short.
    data_root = '{data_root}'
    model.update(pretrained=None, data_preprocessor=dict(size=(128, 128)))
    train_dataloader.update(batch_size=2, num_workers=2, dataset=dict(
        data_root=data_root, indices=12, pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomResize', scale=(480, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type='RandomCrop', crop_size=(128, 128), cat_max_ratio=0.75),
            dict(type='PackSegInputs')]))
    val_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, indices=2))
    test_dataloader = val_dataloader
    train_cfg = dict(max_iters=14, val_interval=1000)
    default_hooks = dict(checkpoint=dict(interval=14), logger=dict(interval=2))
''')


def test_stock_config_trains_under_mmseg_train_tool(camvid_root, tmp_path):
    import mmseg

    mmseg_train = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    if not osp.exists(mmseg_train):
        pytest.skip(f"mmseg's tools/train.py not found at {mmseg_train}")
    config = tmp_path / 'user_upernet.py'
    config.write_text(STOCK_USER_CONFIG.format(
        base='upernet/upernet_r18_4xb4-80k_ade20k-512x512.py', data_root=camvid_root))
    result = subprocess.run(
        [sys.executable, mmseg_train, str(config), '--work-dir', str(tmp_path / 'work')],
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900, env=subprocess_env())
    assert result.returncode == 0, result.stdout[-6000:]
    rows = epoch_lines(result.stdout)
    assert any(row['num_pruned'] > 0 for row in rows), result.stdout[-3000:]
    checkpoint = load_checkpoint(tmp_path / 'work' / 'iter_14.pth')
    assert 'infobatch' in checkpoint


def test_resume_on_other_dataset_size_fails(finished_run, camvid_root, tmp_path):
    source, _ = finished_run
    result = run_train(TINY_CONFIG, tmp_path / 'other_size', camvid_root, check=False,
                       cfg_options=['resume=True', f"load_from={osp.join(source, 'iter_20.pth')}",
                                    'train_dataloader.dataset.indices=30'])
    assert result.returncode != 0
    assert 'dataset of 40 samples but the training dataset has 30' in result.stdout
    assert 'Iter(train) [' not in result.stdout


def test_checkpoint_needs_only_the_allow_list(finished_run):
    """torch.load(weights_only=True) rejects the checkpoint unless allow-listed."""
    import pickle as pickle_module

    work_dir, _ = finished_run
    path = osp.join(work_dir, 'iter_40.pth')
    with pytest.raises(pickle_module.UnpicklingError):
        torch.load(path, map_location='cpu', weights_only=True)
    checkpoint = load_checkpoint(path)
    assert 'message_hub' in checkpoint and 'infobatch' in checkpoint
    # The allow-list is scoped to the block: afterwards loading is strict again.
    with pytest.raises(pickle_module.UnpicklingError):
        torch.load(path, map_location='cpu', weights_only=True)


@pytest.mark.parametrize('layout', ['missing', 'empty'])
def test_train_tool_rejects_bad_data_root(tmp_path, layout):
    if layout == 'empty':
        (tmp_path / 'images' / 'training').mkdir(parents=True)
    result = run_train(TINY_CONFIG, tmp_path / 'work', str(tmp_path), check=False)
    assert result.returncode != 0
    expected = 'no training images' if layout == 'empty' else 'not found'
    assert f'--data-root {tmp_path}' in result.stdout
    assert expected in result.stdout


CONCAT_TINY = textwrap.dedent('''
    _base_ = '{tiny}'
    _part = dict(
        type='ADE20KDataset',
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline={{{{_base_.train_pipeline}}}})
    train_dataloader = dict(dataset=dict(
        _delete_=True, type='ConcatDataset',
        datasets=[dict(_part, indices=list(range(0, 25))),
                  dict(_part, indices=list(range(100, 115)))]))
''')


def test_concat_dataset_keeps_sample_identity(camvid_root, tmp_path):
    """Sampler indices address the concatenation; the order check would catch a mix-up."""
    config = tmp_path / 'concat.py'
    config.write_text(CONCAT_TINY.format(tiny=TINY_CONFIG))
    result = run_train(str(config), tmp_path / 'work', camvid_root,
                       cfg_options=['train_cfg.val_interval=100'])
    rows = epoch_lines(result.stdout)
    assert rows[0]['num_samples'] == 40
    assert any(row['num_pruned'] > 0 for row in rows)
    stream = load_checkpoint(tmp_path / 'work' / 'iter_40.pth')['infobatch']['stream']
    assert torch.isfinite(stream['scores']).all()
