"""Build small mmengine work dirs with hand-made vis_data/scalars.json files.

Steps are training iterations. ``time`` in train lines is seconds per
iteration, as mmengine logs it.
"""
from __future__ import annotations

import json
from pathlib import Path


def train_line(step: int, time: float = 0.5, loss: float = 1.0) -> dict:
    return {'lr': 0.01, 'data_time': 0.01, 'loss': loss, 'time': time,
            'iter': step, 'memory': 0, 'step': step}


def val_line(step: int, miou: float) -> dict:
    return {'aAcc': 80.0, 'mIoU': miou, 'mAcc': 50.0, 'data_time': 0.01,
            'time': 0.2, 'step': step}


def infobatch_line(step: int, virtual_epoch: int, kept_fraction: float | None,
                   samples_seen: int | None = None, num_planned: int = 75,
                   num_pruned: int = 25) -> dict:
    """Return one virtual epoch's InfoBatch scalars.

    Pass kept_fraction=None to omit that key, so readers must fall back to
    num_planned / (num_planned + num_pruned).
    """
    line = {'infobatch/virtual_epoch': virtual_epoch,
            'infobatch/threshold': 0.8,
            'infobatch/num_planned': num_planned,
            'infobatch/num_pruned': num_pruned,
            'step': step}
    if kept_fraction is not None:
        line['infobatch/kept_fraction'] = kept_fraction
    if samples_seen is not None:
        line['infobatch/samples_seen'] = samples_seen
    return line


def training_lines(last_step: int, interval: int = 100, time: float = 0.5,
                   first_step: int | None = None) -> list[dict]:
    """Return train lines every ``interval`` iterations up to ``last_step``."""
    start = interval if first_step is None else first_step
    return [train_line(step, time) for step in range(start, last_step + 1,
                                                     interval)]


def write_run_folder(work_dir: Path, timestamp: str,
                     lines: list[dict | str]) -> Path:
    """Write one run folder. Items of type str are written verbatim."""
    vis_data = work_dir / timestamp / 'vis_data'
    vis_data.mkdir(parents=True, exist_ok=True)
    texts = [line if isinstance(line, str) else json.dumps(line)
             for line in lines]
    path = vis_data / 'scalars.json'
    path.write_text('\n'.join(texts) + '\n', encoding='utf-8')
    return path


def make_work_dir(root: Path, name: str,
                  folders: dict[str, list[dict | str]]) -> Path:
    """Create ``root/name`` with one run folder per timestamp in ``folders``."""
    work_dir = root / name
    work_dir.mkdir(parents=True, exist_ok=True)
    for timestamp, lines in folders.items():
        write_run_folder(work_dir, timestamp, lines)
    return work_dir
