"""Tests of the synthetic ADE20K-layout dataset generator and its CLI."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmib.datasets.synthetic_ade import (MANIFEST_NAME, PALETTE, expected_stems,
                                         generate_ade_layout)

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(num_train=6, num_val=3, size=(96, 64))
ADE_IDS = {style.ade_id for style in PALETTE}


def _stems(directory, suffix):
    return sorted(path.stem for path in directory.glob(f'*{suffix}'))


def _split_bytes(root, split='training'):
    """Return {relative path: bytes} of all images and annotations of a split."""
    files = {}
    for folder in ('images', 'annotations'):
        for path in sorted((Path(root) / folder / split).iterdir()):
            files[f'{folder}/{split}/{path.name}'] = path.read_bytes()
    return files


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic') / 'ade'
    summary = generate_ade_layout(root, seed=3, **SMALL)
    return root, summary


def test_layout_and_file_counts(small_set):
    root, summary = small_set
    assert summary['status'] == 'generated'
    assert (root / MANIFEST_NAME).is_file()
    for split, count in (('training', 6), ('validation', 3)):
        image_stems = _stems(root / 'images' / split, '.jpg')
        annotation_stems = _stems(root / 'annotations' / split, '.png')
        assert image_stems == expected_stems(split, count)
        assert annotation_stems == image_stems
    assert expected_stems('training', 2) == ['demo_train_00001', 'demo_train_00002']


def test_image_and_label_formats(small_set):
    root, _ = small_set
    with Image.open(root / 'images/training/demo_train_00001.jpg') as image:
        assert image.format == 'JPEG'
        assert image.mode == 'RGB'
        assert image.size == (96, 64)
    with Image.open(root / 'annotations/training/demo_train_00001.png') as label:
        assert label.format == 'PNG'
        assert label.mode == 'L'
        assert label.size == (96, 64)


def test_label_values_are_ade_ids(small_set):
    root, summary = small_set
    values = set()
    for path in (root / 'annotations').rglob('*.png'):
        values |= set(np.unique(np.asarray(Image.open(path))).tolist())
    assert values <= ADE_IDS | {0}
    assert max(values) <= 150
    assert {3, 7} <= values, 'every scene has sky (3) and road (7)'
    assert [entry['id'] for entry in summary['classes']] == [style.ade_id for style in PALETTE]
    assert 0.0 < summary['ignore_fraction'] < 0.5


def test_compact_ids_below_94_classes(tmp_path):
    summary = generate_ade_layout(tmp_path / 'ade', num_classes=8, **SMALL)
    values = set()
    for path in (tmp_path / 'ade' / 'annotations').rglob('*.png'):
        values |= set(np.unique(np.asarray(Image.open(path))).tolist())
    assert values <= set(range(9))
    assert [entry['id'] for entry in summary['classes']] == list(range(1, 9))


def test_same_seed_gives_identical_bytes(tmp_path):
    generate_ade_layout(tmp_path / 'a', seed=11, **SMALL)
    generate_ade_layout(tmp_path / 'b', seed=11, **SMALL)
    first, second = _split_bytes(tmp_path / 'a'), _split_bytes(tmp_path / 'b')
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_different_seeds_differ(tmp_path):
    generate_ade_layout(tmp_path / 'a', seed=1, **SMALL)
    generate_ade_layout(tmp_path / 'b', seed=2, **SMALL)
    first, second = _split_bytes(tmp_path / 'a'), _split_bytes(tmp_path / 'b')
    labels = [name for name in first if name.startswith('annotations/')]
    assert all(first[name] != second[name] for name in labels)


def test_images_independent_of_count(tmp_path):
    generate_ade_layout(tmp_path / 'few', seed=5, num_train=2, num_val=1, size=(96, 64))
    generate_ade_layout(tmp_path / 'many', seed=5, num_train=4, num_val=2, size=(96, 64))
    few, many = _split_bytes(tmp_path / 'few'), _split_bytes(tmp_path / 'many')
    for name, data in few.items():
        assert many[name] == data, name


def test_training_and_validation_differ(small_set):
    root, _ = small_set
    train = (root / 'annotations/training/demo_train_00001.png').read_bytes()
    val = (root / 'annotations/validation/demo_val_00001.png').read_bytes()
    assert train != val


def test_difficulty_spreads(tmp_path):
    summary = generate_ade_layout(tmp_path / 'ade', num_train=40, num_val=1, size=(64, 48))
    difficulty = summary['difficulty']['training']
    assert len(difficulty) == 40
    assert all(0.0 <= value <= 1.0 for value in difficulty)
    assert min(difficulty) < 0.2
    assert max(difficulty) > 0.7


def test_hard_images_are_noisier(tmp_path):
    # The top rows of sky are one nearly flat class region, so their pixel spread
    # measures the difficulty-dependent noise, colour shift and illumination.
    root = tmp_path / 'ade'
    summary = generate_ade_layout(root, num_train=40, num_val=1, size=(96, 64))
    difficulty = np.array(summary['difficulty']['training'])
    spreads = []
    for stem in expected_stems('training', 40):
        image = np.asarray(Image.open(root / 'images/training' / f'{stem}.jpg'), dtype=float)
        label = np.asarray(Image.open(root / 'annotations/training' / f'{stem}.png'))
        sky_rows = image[:6][label[:6] == 3]
        spreads.append(sky_rows.std(axis=0).mean() if len(sky_rows) > 20 else np.nan)
    spreads = np.array(spreads)
    valid = ~np.isnan(spreads)
    easy = spreads[valid & (difficulty < 0.2)]
    hard = spreads[valid & (difficulty > 0.6)]
    assert len(easy) > 0
    assert len(hard) > 0
    assert hard.mean() > 2 * easy.mean()


def test_rerun_keeps_existing_set(small_set):
    root, first = small_set
    label_path = root / 'annotations/training/demo_train_00001.png'
    modified = label_path.stat().st_mtime_ns
    summary = generate_ade_layout(root, seed=3, **SMALL)
    assert summary['status'] == 'existing'
    assert summary['seconds'] == 0.0
    assert label_path.stat().st_mtime_ns == modified
    assert summary['classes'] == first['classes']
    assert summary['difficulty'] == first['difficulty']


def test_rerun_completes_interrupted_set(tmp_path):
    root = tmp_path / 'ade'
    generate_ade_layout(root, **SMALL)
    expected = _split_bytes(root)
    (root / 'annotations/training/demo_train_00002.png').unlink()
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest['complete'] = False
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))

    summary = generate_ade_layout(root, **SMALL)
    assert summary['status'] == 'generated'
    assert _split_bytes(root) == expected
    assert json.loads((root / MANIFEST_NAME).read_text())['complete'] is True


def test_rejects_foreign_directory(tmp_path):
    root = tmp_path / 'ade'
    root.mkdir()
    (root / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='overwrite'):
        generate_ade_layout(root, **SMALL)
    assert (root / 'notes.txt').read_text() == 'keep me'
    assert not (root / 'images').exists()


def test_rejects_real_ade_layout(tmp_path):
    root = tmp_path / 'ade'
    (root / 'images' / 'training').mkdir(parents=True)
    (root / 'images' / 'training' / 'ADE_train_00000001.jpg').write_bytes(b'not generated')
    with pytest.raises(FileExistsError, match=MANIFEST_NAME):
        generate_ade_layout(root, **SMALL)
    assert (root / 'images' / 'training' / 'ADE_train_00000001.jpg').exists()


def test_rejects_different_parameters(tmp_path):
    root = tmp_path / 'ade'
    generate_ade_layout(root, seed=0, **SMALL)
    before = _split_bytes(root)
    with pytest.raises(FileExistsError, match='seed'):
        generate_ade_layout(root, seed=1, **SMALL)
    assert _split_bytes(root) == before


def test_rejects_extra_files_in_split(tmp_path):
    root = tmp_path / 'ade'
    generate_ade_layout(root, **SMALL)
    extra = root / 'images' / 'training' / 'added_by_user.jpg'
    extra.write_bytes(b'user data')
    with pytest.raises(FileExistsError, match='added_by_user.jpg'):
        generate_ade_layout(root, **SMALL)
    assert extra.read_bytes() == b'user data'


def test_overwrite_replaces_only_layout(tmp_path):
    root = tmp_path / 'ade'
    (root / 'images' / 'training').mkdir(parents=True)
    (root / 'images' / 'training' / 'ADE_train_00000001.jpg').write_bytes(b'old')
    (root / 'notes.txt').write_text('keep me')

    summary = generate_ade_layout(root, seed=4, overwrite=True, **SMALL)
    assert summary['status'] == 'generated'
    assert not (root / 'images' / 'training' / 'ADE_train_00000001.jpg').exists()
    assert _stems(root / 'images' / 'training', '.jpg') == expected_stems('training', 6)
    assert (root / 'notes.txt').read_text() == 'keep me'
    assert json.loads((root / MANIFEST_NAME).read_text())['params']['seed'] == 4


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'num_train'),
    (dict(num_val=0), 'num_val'),
    (dict(size=(16, 64)), 'size'),
    (dict(size=(64,)), 'size'),
    (dict(seed=-1), 'seed'),
    (dict(num_classes=7), 'num_classes'),
    (dict(num_classes=255), 'num_classes'),
])
def test_invalid_parameters(tmp_path, kwargs, message):
    params = dict(SMALL, **kwargs)
    with pytest.raises(ValueError, match=message):
        generate_ade_layout(tmp_path / 'ade', **params)
    assert not (tmp_path / 'ade').exists()


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / 'ade'
    root.write_text('not a directory')
    with pytest.raises(FileExistsError, match='not a directory'):
        generate_ade_layout(root, **SMALL)
    with pytest.raises(FileExistsError, match='not a directory'):
        generate_ade_layout(root, overwrite=True, **SMALL)
    assert root.read_text() == 'not a directory'


def _load_cli():
    spec = importlib.util.spec_from_file_location('make_demo_data',
                                                  REPO_ROOT / 'tools' / 'make_demo_data.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_then_skips(tmp_path, capsys):
    cli = _load_cli()
    args = [str(tmp_path / 'ade'), '--num-train', '3', '--num-val', '2', '--width', '64',
            '--height', '48', '--seed', '7']
    assert cli.main(args) == 0
    output = capsys.readouterr().out
    assert 'Wrote 3 training and 2 validation images (64x48, seed 7)' in output
    assert len(list((tmp_path / 'ade' / 'images' / 'training').glob('*.jpg'))) == 3

    assert cli.main(args) == 0
    assert 'nothing written' in capsys.readouterr().out


def test_cli_reports_foreign_directory(tmp_path, capsys):
    cli = _load_cli()
    root = tmp_path / 'ade'
    root.mkdir()
    (root / 'notes.txt').write_text('keep me')
    assert cli.main([str(root), '--num-train', '2', '--num-val', '1']) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert cli.main([str(root), '--num-train', '2', '--num-val', '1', '--overwrite']) == 0


# mmseg 1.2 warns whenever LoadAnnotations gets reduce_zero_label, which its
# own ADE20K configs still pass.
@pytest.mark.filterwarnings('ignore:`reduce_zero_label` will be deprecated:UserWarning')
def test_mmseg_ade20k_dataset_loads(small_set):
    pytest.importorskip('mmseg')
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    root, _ = small_set
    dataset = ADE20KDataset(
        data_root=str(root),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True)])
    assert len(dataset) == 6

    sample = dataset[0]
    assert sample['img'].shape == (64, 96, 3)
    gt = sample['gt_seg_map']
    assert gt.shape == (64, 96)
    values = set(np.unique(gt).tolist())
    assert values <= set(range(150)) | {255}
    assert values <= {style.ade_id - 1 for style in PALETTE} | {255}

    class_names = ADE20KDataset.METAINFO['classes']
    for style in PALETTE:
        assert class_names[style.ade_id - 1] == style.name
