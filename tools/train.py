"""Train a segmentor with mmengine's Runner; mmseg's train.py plus mmib fixes.

Flags match mmseg's ``tools/train.py`` (config, ``--work-dir``, ``--resume``,
``--amp``, ``--cfg-options``, ``--launcher``) with one addition,
``--data-root``, which points both the train and val datasets at one
ADE20K-layout folder.

On a machine without CUDA, ``--launcher pytorch`` initialises the process
group with gloo before the Runner does (mmengine 0.10.7 would call
``torch.cuda.set_device``) and wraps the model in DDP with
``device_ids=None``.
"""
import argparse
import logging
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor (mmib)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--resume', action='store_true', default=False,
        help='resume from the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--data-root',
        help='ADE20K-layout folder (images/ and annotations/ with training/ '
        'and validation/) for both train and val datasets')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. '
        'train_cfg.max_iters=200')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.data_root is not None:
        data_root = osp.abspath(args.data_root)
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader) is not None:
                cfg[loader].dataset.data_root = data_root
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError(f'--amp needs optim_wrapper type OptimWrapper, got {optim_wrapper}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    cfg.resume = args.resume
    if args.launcher != 'none' and not torch.cuda.is_available():
        prepare_cpu_distributed(cfg, args.launcher)
    return cfg


def prepare_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Start a gloo process group and DDP without device ids on CPU hosts."""
    from mmengine.dist import init_dist, is_distributed

    if not is_distributed():
        if launcher == 'pytorch':
            torch.distributed.init_process_group(backend='gloo')
        else:
            init_dist(launcher, backend='gloo')
    cfg.setdefault('env_cfg', {})
    cfg.env_cfg.setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else None
    if runner is None:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
