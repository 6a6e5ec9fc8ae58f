"""Shared helpers for the P1 and P2 benchmarks: data, commands and logs.

Both benchmarks train the CPU demo config through ``tools/train.py`` in
subprocesses, so each run goes through mmengine's real Runner, and then read
the ``vis_data/scalars.json`` that mmengine writes into the run folder.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'fcn_r18-mini_infobatch_cpu-demo.py'
TRAIN_TOOL = REPO_ROOT / 'tools' / 'train.py'
COMPARE_TOOL = REPO_ROOT / 'tools' / 'compare_runs.py'
DEMO_DATA_TOOL = REPO_ROOT / 'tools' / 'make_demo_data.py'
CAMVID_ROOT = REPO_ROOT.parent / 'shared' / 'data' / 'camvid_ade150'
GENERATED_DATA_ROOT = REPO_ROOT / 'data' / 'demo_ade'

RUN_FOLDER_PATTERN = re.compile(r'^\d{8}_\d{6}$')

# These options turn the InfoBatch demo config into stock mmseg training with
# the plain EncoderDecoder, mmengine's InfiniteSampler and no InfoBatchHook.
# ``_delete_`` replaces the sampler dict, which drops the InfoBatch sampler's
# prune_ratio and delta keys. The config still imports mmib, which only
# registers modules.
STOCK_OPTIONS = (
    'model.type=EncoderDecoder',
    'train_dataloader.sampler._delete_=True',
    'train_dataloader.sampler.type=InfiniteSampler',
    'train_dataloader.sampler.shuffle=True',
    'custom_hooks=[]',
)


def resolve_data_root(data_root: Optional[str], allow_generated: bool) -> Path:
    """Return the dataset folder to train on.

    Order: ``data_root`` if given, the CamVid set next to the repository,
    then (if ``allow_generated``) the synthetic demo set, generated on first
    use with ``tools/make_demo_data.py``. Raises FileNotFoundError otherwise.
    """
    if data_root is not None:
        path = Path(data_root).resolve()
        if not (path / 'images' / 'training').is_dir():
            raise FileNotFoundError(
                f'{path} has no images/training folder; pass an ADE20K-layout '
                'dataset root to --data-root')
        return path
    if (CAMVID_ROOT / 'images' / 'training').is_dir():
        return CAMVID_ROOT
    if not allow_generated:
        raise FileNotFoundError(
            f'CamVid data not found at {CAMVID_ROOT}; pass --data-root')
    print(f'CamVid data not found at {CAMVID_ROOT}; using the synthetic demo '
          f'set at {GENERATED_DATA_ROOT}', flush=True)
    subprocess.run([sys.executable, str(DEMO_DATA_TOOL), str(GENERATED_DATA_ROOT)],
                   check=True, cwd=REPO_ROOT)
    return GENERATED_DATA_ROOT


def train_command(work_dir: Path, data_root: Path, cfg_options: list[str]) -> list[str]:
    return [sys.executable, str(TRAIN_TOOL), str(DEMO_CONFIG),
            '--work-dir', str(work_dir), '--data-root', str(data_root),
            '--cfg-options', *cfg_options]


def format_command(command: list[str]) -> str:
    """Return the command as one shell line with paths relative to the repo."""
    parts = []
    for part in command:
        if part == sys.executable:
            part = 'python'
        elif part.startswith(str(REPO_ROOT) + os.sep):
            part = os.path.relpath(part, REPO_ROOT)
        parts.append(f"'{part}'" if any(char in part for char in ' []()') else part)
    return ' '.join(parts)


def run_logged(command: list[str], log_path: Path) -> tuple[int, float]:
    """Run a command with stdout and stderr in ``log_path``.

    Returns the exit status and the wall time in seconds.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open('w', encoding='utf-8') as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT, check=False)
    return completed.returncode, time.perf_counter() - start


def log_tail(log_path: Path, num_lines: int = 30) -> str:
    lines = log_path.read_text(encoding='utf-8', errors='replace').splitlines()
    return '\n'.join(lines[-num_lines:])


def latest_scalars_path(work_dir: Path) -> Path:
    """Return ``vis_data/scalars.json`` of the newest run folder of a work dir.

    Raises FileNotFoundError when no run folder has one.
    """
    folders = sorted(path for path in work_dir.iterdir()
                     if path.is_dir() and RUN_FOLDER_PATTERN.match(path.name)
                     and (path / 'vis_data' / 'scalars.json').is_file())
    if not folders:
        raise FileNotFoundError(
            f'no YYYYMMDD_HHMMSS/vis_data/scalars.json in {work_dir}')
    return folders[-1] / 'vis_data' / 'scalars.json'


def read_scalars(path: Path) -> list[dict]:
    """Return the JSON objects of a scalars.json file, one per line."""
    records = []
    with path.open(encoding='utf-8') as file:
        for line in file:
            if line.strip():
                records.append(json.loads(line))
    return records


def load_average() -> str:
    return ', '.join(f'{value:.2f}' for value in os.getloadavg())
