"""Helpers for end-to-end tests that run tools/train.py in a subprocess."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import torch

from mmib.engine import allow_mmengine_checkpoints

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'configs', 'demo_tiny.py')
TRAIN_TOOL = osp.join(REPO_ROOT, 'tools', 'train.py')
EPOCH_LINE = re.compile(
    r'InfoBatch virtual epoch (\d+)( \(annealing: no pruning\))?: planned (\d+) of (\d+) '
    r'samples( \(cut at the annealing boundary[^)]*\))?, scored (\d+), well-learned (\d+), '
    r'pruned (\d+)')


def subprocess_env():
    """Environment for training subprocesses: unbuffered, one OpenMP thread.

    On 2 cores the DataLoader workers already use the second core; two
    OpenMP threads in the trainer spin against them and slow it down.
    """
    return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')


def train_command(config, work_dir, data_root, *extra, cfg_options=()):
    command = [sys.executable, TRAIN_TOOL, config, '--work-dir', str(work_dir),
               '--data-root', data_root, *extra]
    if cfg_options:
        command += ['--cfg-options', *cfg_options]
    return command


def run_train(config, work_dir, data_root, *extra, cfg_options=(), timeout=600, check=True):
    """Run tools/train.py to completion and return its combined output."""
    result = subprocess.run(
        train_command(config, work_dir, data_root, *extra, cfg_options=cfg_options),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, env=subprocess_env())
    if check and result.returncode != 0:
        raise AssertionError(f'training failed (exit {result.returncode}):\n'
                             + result.stdout[-6000:])
    return result


def epoch_lines(text):
    """Parse the per-virtual-epoch log lines into dicts."""
    rows = []
    for match in EPOCH_LINE.finditer(text):
        rows.append(dict(
            virtual_epoch=int(match.group(1)), annealed=bool(match.group(2)),
            num_planned=int(match.group(3)), num_samples=int(match.group(4)),
            cut=bool(match.group(5)), num_scored=int(match.group(6)),
            num_well_learned=int(match.group(7)), num_pruned=int(match.group(8))))
    return rows


def load_checkpoint(path):
    with allow_mmengine_checkpoints():
        return torch.load(path, map_location='cpu')


def scalars(work_dir):
    """Return the scalars.json lines of every run folder, oldest first."""
    lines = []
    for path in sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(path) as file:
            lines += [json.loads(line) for line in file if line.strip()]
    return lines
