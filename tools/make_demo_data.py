"""Write the synthetic ADE20K-layout demo dataset.

Example::

    python tools/make_demo_data.py data/synthetic_ade --num-train 200 --num-val 40

Running it again with the same arguments keeps the existing files.
"""

import argparse
import sys
from pathlib import Path

# Lets the tool run from a source checkout where mmib is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmib.datasets.synthetic_ade import generate_ade_layout  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a synthetic segmentation dataset in the ADEChallengeData2016 '
        'layout (images/{training,validation}/*.jpg, annotations/{training,validation}/*.png).')
    parser.add_argument('out_dir', help='dataset root to write, created if missing')
    parser.add_argument('--num-train', type=int, default=200, help='number of training images')
    parser.add_argument('--num-val', type=int, default=40, help='number of validation images')
    parser.add_argument('--width', type=int, default=256, help='image width in pixels')
    parser.add_argument('--height', type=int, default=192, help='image height in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--num-classes', type=int, default=150,
                        help='label space size: 94 or more writes ADE20K ids, 8 to 93 writes '
                        'compact ids 1..8')
    parser.add_argument('--overwrite', action='store_true',
                        help='delete OUT_DIR/images, OUT_DIR/annotations and the manifest first, '
                        'whatever they contain')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = generate_ade_layout(
            args.out_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            size=(args.width, args.height),
            seed=args.seed,
            num_classes=args.num_classes,
            overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2

    params = summary['params']
    counts = f"{params['num_train']} training and {params['num_val']} validation images"
    size = f"{params['width']}x{params['height']}"
    if summary['status'] == 'existing':
        print(f"{summary['root']} already contains {counts} ({size}, seed {params['seed']}); "
              'nothing written.')
    else:
        print(f"Wrote {counts} ({size}, seed {params['seed']}) to {summary['root']} "
              f"in {summary['seconds']:.1f} s.")
    classes = ', '.join(f"{entry['id']} {entry['name']} {entry['pixel_fraction']:.1%}"
                        for entry in summary['classes'])
    print(f'Label ids and training pixel fractions: {classes}. '
          f"Label 0 (ignored): {summary['ignore_fraction']:.1%}.")
    difficulty = summary['difficulty']['training']
    print(f'Training difficulty: min {min(difficulty):.2f}, '
          f'mean {sum(difficulty) / len(difficulty):.2f}, max {max(difficulty):.2f}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
