"""Shared fixtures: real CamVid images in ADE20K layout, small model configs."""
import os
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.abspath(osp.join(REPO_ROOT, '..', 'shared', 'data'))
CAMVID_ROOT = os.environ.get('MMIB_CAMVID_ROOT', osp.join(SHARED_DATA, 'camvid_ade150'))
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'fcn_r18-mini_infobatch_cpu-demo.py')


@pytest.fixture(scope='session')
def camvid_root():
    """Folder of the CamVid set remapped to ADE20K ids; skips when absent."""
    if not osp.isdir(osp.join(CAMVID_ROOT, 'images', 'training')):
        pytest.skip(f'CamVid ADE20K-layout data not found at {CAMVID_ROOT} '
                    '(set MMIB_CAMVID_ROOT to its folder)')
    return CAMVID_ROOT


@pytest.fixture(autouse=True, scope='session')
def single_torch_thread():
    """Run torch ops on one thread.

    On a 2-core machine that also runs DataLoader workers, two OpenMP threads
    spin against each other and make small convolutions many times slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
