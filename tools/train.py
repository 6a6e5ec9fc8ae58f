"""Train a segmentor with mmengine's Runner; mmseg's train.py plus mmib fixes.

Flags match mmseg's ``tools/train.py`` (config, ``--work-dir``, ``--resume``,
``--amp``, ``--cfg-options``, ``--launcher``) with one addition,
``--data-root``, which points the train, val and test datasets at one
ADE20K-layout folder.

On a machine without CUDA, ``--launcher pytorch``, ``slurm`` and ``mpi``
initialise the process group with gloo before the Runner does (mmengine
0.10.7's ``init_dist`` would call ``torch.cuda.set_device``) and wrap the
model in DDP with ``device_ids=None``. Set ``GLOO_SOCKET_IFNAME`` to the
network interface gloo should use when the hostname does not resolve to it.
"""
import argparse
import logging
import os
import os.path as osp
import subprocess
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


def check_data_root(data_root: str) -> None:
    """Exit with a clear message if ``data_root`` has no training images.

    mmengine 0.10.7 fails on an empty dataset with "need at least one array
    to concatenate", which does not name the folder.
    """
    images = osp.join(data_root, 'images', 'training')
    if not osp.isdir(images):
        raise SystemExit(f'--data-root {data_root}: folder {images} not found; expected '
                         'the ADE20K layout images/{training,validation} and '
                         'annotations/{training,validation}')
    if not any(name.lower().endswith(('.jpg', '.jpeg', '.png')) for name in os.listdir(images)):
        raise SystemExit(f'--data-root {data_root}: no training images in {images}')


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.data_root is not None:
        data_root = osp.abspath(args.data_root)
        check_data_root(data_root)
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader) is not None:
                set_data_root(cfg[loader].dataset, data_root)
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

    if args.resume:
        cfg.resume = True
    if args.launcher != 'none' and not torch.cuda.is_available():
        prepare_cpu_distributed(cfg, args.launcher)
    return cfg


def set_data_root(dataset_cfg, data_root: str) -> None:
    """Set ``data_root`` on a dataset config, or on the datasets it wraps.

    Wrappers such as ``RepeatDataset`` and ``ClassBalancedDataset`` wrap one
    dataset under ``dataset``, and ``ConcatDataset`` wraps a list under
    ``datasets``.
    """
    if 'dataset' in dataset_cfg:
        set_data_root(dataset_cfg['dataset'], data_root)
    elif 'datasets' in dataset_cfg:
        for inner in dataset_cfg['datasets']:
            set_data_root(inner, data_root)
    else:
        dataset_cfg['data_root'] = data_root


def torch_env_from_launcher(launcher: str, environ) -> dict:
    """Return the ``env://`` variables that a slurm or mpi launcher implies.

    ``MASTER_ADDR`` and ``MASTER_PORT`` already in ``environ`` win. Under
    slurm the default master address is the first host of
    ``SLURM_NODELIST``, resolved with ``scontrol show hostnames``. The
    default port is 29500.
    """
    if launcher == 'slurm':
        names = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
        missing = [name for name in names if name not in environ]
        if missing:
            raise KeyError(f'--launcher slurm needs {", ".join(missing)} in the '
                           'environment; start the job with srun (tools/slurm_train.sh)')
        env = dict(RANK=environ['SLURM_PROCID'], WORLD_SIZE=environ['SLURM_NTASKS'],
                   LOCAL_RANK=environ.get('SLURM_LOCALID', '0'))
        if 'MASTER_ADDR' not in environ:
            env['MASTER_ADDR'] = first_slurm_host(environ['SLURM_NODELIST'])
    elif launcher == 'mpi':
        names = ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR')
        missing = [name for name in names if name not in environ]
        if missing:
            raise KeyError(f'--launcher mpi needs {", ".join(missing)} in the '
                           'environment; start the job with Open MPI mpirun and '
                           'export MASTER_ADDR (the host of rank 0)')
        env = dict(RANK=environ['OMPI_COMM_WORLD_RANK'],
                   WORLD_SIZE=environ['OMPI_COMM_WORLD_SIZE'],
                   LOCAL_RANK=environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'))
    else:
        raise ValueError(f'unknown launcher {launcher!r}; use pytorch, slurm or mpi')
    env.setdefault('MASTER_PORT', environ.get('MASTER_PORT', '29500'))
    return env


def first_slurm_host(node_list: str) -> str:
    """Return the first host name of a slurm node list such as ``node[01-04]``."""
    result = subprocess.run(['scontrol', 'show', 'hostnames', node_list],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise RuntimeError(
            f'scontrol show hostnames {node_list!r} failed (exit {result.returncode}): '
            f'{result.stderr.strip()}; set MASTER_ADDR to the host of rank 0')
    return hosts[0]


def prepare_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Start a gloo process group and DDP without device ids on CPU hosts."""
    from mmengine.dist import is_distributed

    if not is_distributed():
        if launcher != 'pytorch':
            os.environ.update(torch_env_from_launcher(launcher, os.environ))
        torch.distributed.init_process_group(backend='gloo')
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
    report_final_miou(runner)


def report_final_miou(runner) -> None:
    """Log the last validation mIoU and the iteration it was measured at."""
    scalar = runner.message_hub.log_scalars.get('val/mIoU')
    if scalar is None:
        runner.logger.info('no validation ran, so there is no final mIoU')
        return
    runner.logger.info(f'final mIoU: {scalar.current():.2f} after {runner.iter} iterations')


if __name__ == '__main__':
    main()
