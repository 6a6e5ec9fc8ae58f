"""Synthetic street scenes in the ADEChallengeData2016 directory layout.

``generate_ade_layout`` writes a small dataset that mmseg's stock
``ADE20KDataset`` loads unchanged, so the demo and the tests can train a real
segmentation model without downloading ADE20K::

    root/
        images/training/demo_train_00001.jpg        RGB JPEG, quality 95
        images/validation/demo_val_00001.jpg
        annotations/training/demo_train_00001.png   8-bit single-channel PNG
        annotations/validation/demo_val_00001.png
        mmib_synthetic.json                         parameters and statistics

Annotation values follow the ADE20K convention: 0 is "other" (mmseg maps it to
the ignore index 255 when ``reduce_zero_label=True``) and 1..150 are ADE20K
class ids. Each scene is a street: sky, a building skyline, road and sidewalk,
then trees, people, cars and poles, each class drawn with its own colour and
texture. A per-image difficulty in [0, 1] scales noise, blur, contrast loss,
object size and the number of objects, distractor shapes and ignored clutter,
so per-image losses spread out the way data pruning needs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MANIFEST_NAME = 'mmib_synthetic.json'
GENERATOR_NAME = 'mmib.datasets.synthetic_ade'
# Increase when a change to the drawing code changes the written files, so a
# set made by an older version is not mistaken for the current output.
GENERATOR_VERSION = 1

SPLITS = ('training', 'validation')
STEM_PREFIXES = {'training': 'demo_train', 'validation': 'demo_val'}
JPEG_QUALITY = 95
MIN_IMAGE_SIDE = 32
# Label values are stored in 8 bits, and mmseg uses 255 as the ignore index.
MAX_NUM_CLASSES = 254


@dataclass(frozen=True)
class ClassStyle:
    """Appearance of one palette class: ADE20K id and name, RGB colour, texture kind."""

    ade_id: int
    name: str
    rgb: tuple[int, int, int]
    texture: str


# ADE20K ids are the 1-based values of ADE20K annotation files, so mmseg's
# class index is ``ade_id - 1`` after reduce_zero_label.
PALETTE = (
    ClassStyle(3, 'sky', (110, 160, 225), 'gradient'),
    ClassStyle(2, 'building', (150, 115, 95), 'windows'),
    ClassStyle(7, 'road', (85, 85, 90), 'grain'),
    ClassStyle(12, 'sidewalk', (195, 185, 150), 'tiles'),
    ClassStyle(5, 'tree', (55, 125, 45), 'blotches'),
    ClassStyle(13, 'person', (205, 75, 85), 'horizontal_stripes'),
    ClassStyle(21, 'car', (165, 45, 155), 'diagonal_stripes'),
    ClassStyle(94, 'pole', (230, 200, 40), 'flat'),
)
# Drawing writes palette indices 1..len(PALETTE) into an appearance map. Ignored
# clutter shapes use the values from CLUTTER_FIRST upwards, each with its own colour.
SKY, BUILDING, ROAD, SIDEWALK, TREE, PERSON, CAR, POLE = range(1, len(PALETTE) + 1)
OBJECT_CLASSES = (TREE, PERSON, CAR, POLE)
OBJECT_WEIGHTS = (0.3, 0.3, 0.25, 0.15)
CLUTTER_FIRST = len(PALETTE) + 1
MAX_CLUTTER_SHAPES = 20


def generate_ade_layout(root: str | os.PathLike,
                        num_train: int = 200,
                        num_val: int = 40,
                        size: tuple[int, int] = (256, 192),
                        seed: int = 0,
                        num_classes: int = 150,
                        overwrite: bool = False) -> dict[str, Any]:
    """Write a synthetic segmentation dataset in the ADEChallengeData2016 layout.

    Args:
        root: Dataset root. It is created if missing.
        num_train: Number of training images, at least 1.
        num_val: Number of validation images, at least 1.
        size: Image size in pixels as ``(width, height)``, each side at least 32.
        seed: Seed of the numpy Generator. Image ``i`` of a split depends only on
            ``seed``, the split and ``i``, so a larger ``num_train`` keeps the
            first images unchanged. NOTE: other numpy or Pillow versions may
            write different bytes for the same seed, because they own the
            random streams, the shape rasterization and the JPEG encoder.
        num_classes: Size of the label space. With 94 or more (94 is the
            largest ADE20K id in the palette) labels are ADE20K ids. With 8 to
            93, the 8 palette classes get the compact ids 1..8 in ``PALETTE``
            order, for configs with a reduced class list.
        overwrite: Delete ``root/images``, ``root/annotations`` and the manifest
            before writing, whatever they contain. Other entries in ``root``
            are left in place.

    Returns:
        Summary dict with the keys

        - ``root``: the dataset root as a string.
        - ``status``: ``'generated'``, or ``'existing'`` when a complete set
          with the same parameters was already there.
        - ``params``: the validated parameters, as stored in the manifest.
        - ``classes``: label id, name and training pixel fraction of each
          palette class.
        - ``ignore_fraction``: fraction of training pixels labelled 0.
        - ``difficulty``: per split, one value in [0, 1] per image in stem order.
        - ``seconds``: generation time, 0.0 when existing.

    Raises:
        ValueError: If a parameter is out of range.
        FileExistsError: If ``root`` contains files that this function did not
            write with the same parameters and ``overwrite`` is False.
    """
    root = Path(root)
    params = _validate_params(num_train, num_val, size, seed, num_classes)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f'Dataset root {root} exists and is not a directory. '
                              'Choose another path.')

    if overwrite:
        _remove_generated_entries(root)
    elif _existing_set_is_complete(root, params):
        manifest = _read_manifest(root)
        return _summary_from_manifest(root, manifest, status='existing', seconds=0.0)
    else:
        # The set is missing or an interrupted run of the same parameters, which
        # is safe to replace because the manifest marks it as this generator's.
        _remove_generated_entries(root)

    start = time.perf_counter()
    manifest = _generate(root, params)
    seconds = time.perf_counter() - start
    return _summary_from_manifest(root, manifest, status='generated', seconds=seconds)


def expected_stems(split: str, count: int) -> list[str]:
    """Return the file stems of a split in order, e.g. ``demo_train_00001``."""
    prefix = STEM_PREFIXES[split]
    return [f'{prefix}_{index + 1:05d}' for index in range(count)]


def label_ids(num_classes: int) -> list[int]:
    """Return the annotation value of each ``PALETTE`` class for ``num_classes``."""
    if num_classes >= max(style.ade_id for style in PALETTE):
        return [style.ade_id for style in PALETTE]
    return list(range(1, len(PALETTE) + 1))


# ---------------------------------------------------------------------------
# Parameters, manifest and the state of an existing root
# ---------------------------------------------------------------------------


def _validate_params(num_train: int, num_val: int, size: tuple[int, int], seed: int,
                     num_classes: int) -> dict[str, Any]:
    if int(num_train) < 1:
        raise ValueError(f'num_train must be at least 1, got {num_train}.')
    if int(num_val) < 1:
        raise ValueError(f'num_val must be at least 1, got {num_val}.')
    if len(size) != 2:
        raise ValueError(f'size must be (width, height), got {size!r}.')
    width, height = (int(side) for side in size)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(f'size must be at least {MIN_IMAGE_SIDE} pixels on each side, '
                         f'got width={width}, height={height}.')
    if int(seed) < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed}.')
    if not len(PALETTE) <= int(num_classes) <= MAX_NUM_CLASSES:
        raise ValueError(f'num_classes must be between {len(PALETTE)} and {MAX_NUM_CLASSES}, '
                         f'got {num_classes}. Use 150 for the ADE20K label space.')
    return {
        'num_train': int(num_train),
        'num_val': int(num_val),
        'width': width,
        'height': height,
        'seed': int(seed),
        'num_classes': int(num_classes),
    }


def _split_counts(params: dict[str, Any]) -> dict[str, int]:
    return {'training': params['num_train'], 'validation': params['num_val']}


def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    return root / 'images' / split, root / 'annotations' / split


def _read_manifest(root: Path) -> dict[str, Any] | None:
    """Return the parsed manifest, or None if it is missing or not a manifest of this generator."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get('generator') != GENERATOR_NAME:
        return None
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    # Write to a temporary file and rename, so an interrupted run never leaves
    # a truncated manifest behind.
    path = root / MANIFEST_NAME
    tmp_path = path.with_name(path.name + '.tmp')
    tmp_path.write_text(json.dumps(manifest, indent=1) + '\n')
    os.replace(tmp_path, path)


def _existing_set_is_complete(root: Path, params: dict[str, Any]) -> bool:
    """Return whether ``root`` contains a complete set for ``params``.

    Returns False when ``root`` is missing or empty, or contains an incomplete
    set that this generator wrote with the same parameters, since both are
    safe to (re)write.

    Raises:
        FileExistsError: If ``root`` contains anything else.
    """
    if not root.exists() or not any(root.iterdir()):
        return False

    manifest = _read_manifest(root)
    if manifest is None:
        raise FileExistsError(
            f'Dataset root {root} is not empty and contains no valid {MANIFEST_NAME}, so '
            'this generator did not write it. Choose an empty or new directory, or pass '
            'overwrite=True (CLI: --overwrite) to delete its images/ and annotations/ folders.')

    found = dict(manifest.get('params') or {}, version=manifest.get('version'))
    requested = dict(params, version=GENERATOR_VERSION)
    differences = [f'{key}={found.get(key)!r} (requested {requested.get(key)!r})'
                   for key in sorted(set(found) | set(requested))
                   if found.get(key) != requested.get(key)]
    if differences:
        raise FileExistsError(
            f'Dataset root {root} contains a synthetic set made with different '
            f'parameters: {", ".join(differences)}. Choose another directory, request '
            'the same parameters, or pass overwrite=True (CLI: --overwrite) to replace it.')

    missing_files = False
    for split, count in _split_counts(params).items():
        image_dir, annotation_dir = _split_dirs(root, split)
        stems = set(expected_stems(split, count))
        for directory, suffix in ((image_dir, '.jpg'), (annotation_dir, '.png')):
            expected_names = {stem + suffix for stem in stems}
            present = {path.name for path in directory.iterdir()} if directory.is_dir() else set()
            unexpected = sorted(present - expected_names)
            if unexpected:
                raise FileExistsError(
                    f'{directory} contains {len(unexpected)} files this generator did not '
                    f'write (first: {unexpected[0]}). Remove them, choose another directory, '
                    'or pass overwrite=True (CLI: --overwrite) to replace the set.')
            missing_files = missing_files or present != expected_names

    return bool(manifest.get('complete')) and not missing_files


def _remove_generated_entries(root: Path) -> None:
    for name in ('images', 'annotations'):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    manifest_path = root / MANIFEST_NAME
    if manifest_path.exists():
        manifest_path.unlink()


def _summary_from_manifest(root: Path, manifest: dict[str, Any], status: str,
                           seconds: float) -> dict[str, Any]:
    return {
        'root': str(root),
        'status': status,
        'params': dict(manifest['params']),
        'classes': [dict(entry) for entry in manifest['classes']],
        'ignore_fraction': manifest['ignore_fraction'],
        'difficulty': {split: list(values) for split, values in manifest['difficulty'].items()},
        'seconds': seconds,
    }


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def _generate(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    ids = label_ids(params['num_classes'])
    # Appearance values map to label values: palette entries to their ids,
    # the background slot 0 and all clutter slots to 0 ("other").
    label_lookup = np.zeros(256, dtype=np.uint8)
    label_lookup[1:len(PALETTE) + 1] = ids

    for split in SPLITS:
        for directory in _split_dirs(root, split):
            directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        'generator': GENERATOR_NAME,
        'version': GENERATOR_VERSION,
        'params': params,
        'complete': False,
    }
    _write_manifest(root, manifest)

    width, height = params['width'], params['height']
    pixel_counts = np.zeros(256, dtype=np.int64)
    difficulty: dict[str, list[float]] = {}
    for split_index, split in enumerate(SPLITS):
        image_dir, annotation_dir = _split_dirs(root, split)
        count = _split_counts(params)[split]
        difficulty[split] = []
        for index, stem in enumerate(expected_stems(split, count)):
            rng = np.random.default_rng([params['seed'], split_index, index])
            image, label, image_difficulty = _render_scene(rng, width, height, label_lookup)
            Image.fromarray(image).save(image_dir / f'{stem}.jpg', quality=JPEG_QUALITY)
            Image.fromarray(label).save(annotation_dir / f'{stem}.png')
            difficulty[split].append(round(image_difficulty, 4))
            if split == 'training':
                pixel_counts += np.bincount(label.ravel(), minlength=256)

    total_pixels = int(pixel_counts.sum())
    manifest['classes'] = [{
        'id': label_id,
        'name': style.name,
        'pixel_fraction': round(int(pixel_counts[label_id]) / total_pixels, 4),
    } for label_id, style in zip(ids, PALETTE)]
    manifest['ignore_fraction'] = round(int(pixel_counts[0]) / total_pixels, 4)
    manifest['difficulty'] = difficulty
    manifest['complete'] = True
    _write_manifest(root, manifest)
    return manifest


def _render_scene(rng: np.random.Generator, width: int, height: int,
                  label_lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Draw one scene.

    Returns the (height, width, 3) uint8 RGB image, the (height, width) uint8
    label map and the difficulty in [0, 1].
    """
    # Skewed towards easy scenes, so a minority of hard images carries most of the loss.
    difficulty = float(rng.uniform() ** 1.5)
    # Objects and building widths shrink to 45 % of their easy-scene size at difficulty 1.
    scale = 1.0 - 0.55 * difficulty

    appearance_image = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(appearance_image)
    horizon = _draw_background(draw, rng, width, height, scale)
    _draw_objects(draw, rng, width, height, horizon, scale, difficulty)
    _draw_distractors(draw, rng, width, height, difficulty)
    num_clutter = _draw_clutter(draw, rng, width, height, difficulty)
    appearance = np.asarray(appearance_image)

    label = label_lookup[appearance]
    if rng.uniform() < 0.5:
        label = _ignore_boundaries(label)

    image = _paint(rng, appearance, horizon, difficulty, num_clutter)
    return image, label, difficulty


def _draw_background(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int,
                     height: int, scale: float) -> int:
    """Draw sky, skyline, road and sidewalks, and return the horizon row."""
    horizon = int(height * rng.uniform(0.3, 0.55))
    draw.rectangle([0, 0, width, horizon], fill=SKY)
    draw.rectangle([0, horizon, width, height], fill=ROAD)

    x = int(rng.integers(-width // 10, width // 10 + 1))
    while x < width:
        building_width = max(4, int(width * rng.uniform(0.1, 0.35) * scale))
        if rng.uniform() < 0.75:
            building_height = int(horizon * rng.uniform(0.25, 0.9))
            draw.rectangle([x, horizon - building_height, x + building_width, horizon],
                           fill=BUILDING)
        x += building_width + int(rng.integers(0, max(2, width // 12)))

    # Sidewalks are trapezoids that widen towards the bottom edge, like a road
    # seen in perspective.
    sides = [side for side in (0, 1) if rng.uniform() < 0.7]
    for side in sides:
        top_width = width * rng.uniform(0.05, 0.3)
        bottom_width = width * rng.uniform(0.2, 0.45)
        edge = 0 if side == 0 else width
        direction = 1 if side == 0 else -1
        draw.polygon([(edge, horizon), (edge + direction * top_width, horizon),
                      (edge + direction * bottom_width, height), (edge, height)],
                     fill=SIDEWALK)
    return horizon


def _draw_objects(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int,
                  height: int, horizon: int, scale: float, difficulty: float) -> None:
    """Draw trees, people, cars and poles standing on the ground, far ones first."""
    count = 1 + int(rng.poisson(1.0 + 5.0 * difficulty))
    kinds = rng.choice(OBJECT_CLASSES, size=count, p=OBJECT_WEIGHTS)
    # Depth 0 is at the horizon and 1 at the bottom edge. Far objects are
    # smaller and are drawn first, so near ones cover them.
    depths = np.sort(rng.uniform(0.05, 1.0, size=count))
    for kind, depth in zip(kinds, depths):
        base_y = horizon + depth * (height - horizon)
        center_x = rng.uniform(0.0, width)
        unit = height * (0.3 + 0.7 * depth) * scale
        if kind == TREE:
            _draw_tree(draw, rng, center_x, base_y, unit)
        elif kind == PERSON:
            _draw_person(draw, rng, center_x, base_y, unit)
        elif kind == CAR:
            _draw_car(draw, rng, center_x, base_y, unit)
        else:
            _draw_pole(draw, rng, center_x, base_y, unit)


def _draw_tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base_y: float,
               unit: float) -> None:
    tree_height = unit * rng.uniform(0.45, 0.7)
    trunk_half_width = max(1.0, tree_height * 0.04)
    crown_half_width = tree_height * rng.uniform(0.2, 0.35)
    crown_bottom = base_y - tree_height * 0.4
    draw.rectangle([x - trunk_half_width, crown_bottom, x + trunk_half_width, base_y], fill=TREE)
    draw.ellipse([x - crown_half_width, base_y - tree_height, x + crown_half_width,
                  crown_bottom + tree_height * 0.1], fill=TREE)


def _draw_person(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base_y: float,
                 unit: float) -> None:
    person_height = unit * rng.uniform(0.3, 0.5)
    half_width = max(1.0, person_height * 0.14)
    head_radius = max(1.0, person_height * 0.09)
    hip_y = base_y - person_height * 0.45
    shoulder_y = base_y - person_height * 0.8
    draw.rectangle([x - half_width, shoulder_y, x + half_width, hip_y], fill=PERSON)
    draw.polygon([(x - half_width, hip_y), (x + half_width, hip_y),
                  (x + half_width * 1.2, base_y), (x - half_width * 1.2, base_y)], fill=PERSON)
    draw.ellipse([x - head_radius, shoulder_y - 2 * head_radius, x + head_radius, shoulder_y],
                 fill=PERSON)


def _draw_car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base_y: float,
              unit: float) -> None:
    body_height = unit * rng.uniform(0.12, 0.18)
    half_length = body_height * rng.uniform(1.2, 1.8)
    body_top = base_y - body_height
    draw.rectangle([x - half_length, body_top, x + half_length, base_y], fill=CAR)
    cabin_top = body_top - body_height * 0.7
    draw.polygon([(x - half_length * 0.7, body_top), (x - half_length * 0.4, cabin_top),
                  (x + half_length * 0.4, cabin_top), (x + half_length * 0.7, body_top)],
                 fill=CAR)


def _draw_pole(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base_y: float,
               unit: float) -> None:
    pole_height = unit * rng.uniform(0.5, 0.8)
    half_width = max(1.0, unit * 0.015)
    draw.rectangle([x - half_width, base_y - pole_height, x + half_width, base_y], fill=POLE)


def _draw_distractors(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int,
                      height: int, difficulty: float) -> None:
    """Draw shapes of random palette classes at random places.

    They break the spatial layout that easy scenes follow, so a model has to
    rely on colour and texture rather than position alone.
    """
    for _ in range(int(rng.poisson(2.5 * difficulty))):
        class_index = int(rng.integers(1, len(PALETTE) + 1))
        _draw_random_shape(draw, rng, width, height, class_index)


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int,
                  difficulty: float) -> int:
    """Draw shapes labelled 0 ("other"), and return how many were drawn."""
    count = min(MAX_CLUTTER_SHAPES, int(rng.poisson(0.4 + 1.6 * difficulty)))
    for clutter_index in range(count):
        _draw_random_shape(draw, rng, width, height, CLUTTER_FIRST + clutter_index,
                           allow_stripes=False)
    return count


def _draw_random_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int,
                       height: int, fill: int, allow_stripes: bool = True) -> None:
    """Draw a rectangle, ellipse, convex polygon or a band across the image."""
    kinds = ('rectangle', 'ellipse', 'polygon', 'stripe') if allow_stripes else (
        'rectangle', 'ellipse', 'polygon')
    kind = kinds[int(rng.integers(len(kinds)))]
    center_x, center_y = rng.uniform(0, width), rng.uniform(0, height)
    radius = height * rng.uniform(0.04, 0.2)

    if kind == 'rectangle':
        half_x, half_y = radius * rng.uniform(0.4, 1.6), radius * rng.uniform(0.4, 1.6)
        draw.rectangle([center_x - half_x, center_y - half_y, center_x + half_x,
                        center_y + half_y], fill=fill)
    elif kind == 'ellipse':
        half_x, half_y = radius * rng.uniform(0.5, 1.5), radius * rng.uniform(0.5, 1.5)
        draw.ellipse([center_x - half_x, center_y - half_y, center_x + half_x,
                      center_y + half_y], fill=fill)
    elif kind == 'polygon':
        num_vertices = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=num_vertices))
        radii = radius * rng.uniform(0.5, 1.2, size=num_vertices)
        draw.polygon([(center_x + r * np.cos(a), center_y + r * np.sin(a))
                      for a, r in zip(angles, radii)], fill=fill)
    else:
        # A band of width ~radius/2 through the centre, long enough to cross
        # the whole image at any angle.
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]]) * max(1.0, radius * 0.25)
        reach = direction * (width + height)
        center = np.array([center_x, center_y])
        corners = [center - reach - normal, center + reach - normal,
                   center + reach + normal, center - reach + normal]
        draw.polygon([tuple(corner) for corner in corners], fill=fill)


def _ignore_boundaries(label: np.ndarray) -> np.ndarray:
    """Set the pixels on both sides of every class boundary to 0, as ADE20K annotations often do."""
    boundary = np.zeros(label.shape, dtype=bool)
    horizontal_change = label[:, 1:] != label[:, :-1]
    vertical_change = label[1:, :] != label[:-1, :]
    boundary[:, 1:] |= horizontal_change
    boundary[:, :-1] |= horizontal_change
    boundary[1:, :] |= vertical_change
    boundary[:-1, :] |= vertical_change
    result = label.copy()
    result[boundary] = 0
    return result


# ---------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------


def _paint(rng: np.random.Generator, appearance: np.ndarray, horizon: int, difficulty: float,
           num_clutter: int) -> np.ndarray:
    """Colour each appearance region, then degrade the image by ``difficulty``.

    Returns a (height, width, 3) uint8 RGB image.
    """
    height, width = appearance.shape
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), dtype=np.float32)

    for value in np.unique(appearance):
        mask = appearance == value
        if 1 <= value <= len(PALETTE):
            style = PALETTE[value - 1]
            texture = _class_texture(rng, style, rows, columns, horizon, difficulty)
        else:
            # Slot 0 is never drawn. Clutter gets a random colour and blotches.
            colour = rng.uniform(0, 255, size=3).astype(np.float32)
            blotches = _smooth_noise(rng, height, width, cell=8)[..., None] * 25.0
            texture = colour + blotches
        image[mask] = texture[mask]

    # Degradations, all zero at difficulty 0: illumination ramp, contrast loss,
    # pixel noise and blur.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (columns / width - 0.5) + np.sin(angle) * (rows / height - 0.5)) * 2
    image *= (1.0 + 0.35 * difficulty * ramp)[..., None]
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + (image - mean) * (1.0 - 0.55 * difficulty)
    image += rng.normal(0.0, 2.0 + 30.0 * difficulty, size=image.shape).astype(np.float32)
    result = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    blur_radius = 1.5 * difficulty
    if blur_radius >= 0.3:
        result = result.filter(ImageFilter.GaussianBlur(blur_radius))
    return np.asarray(result)


def _class_texture(rng: np.random.Generator, style: ClassStyle, rows: np.ndarray,
                   columns: np.ndarray, horizon: int, difficulty: float) -> np.ndarray:
    """Return a full-frame (height, width, 3) float32 texture of one class in 0..255 units.

    The per-image colour jitter grows and the texture amplitude shrinks with
    ``difficulty``, so hard images make classes harder to tell apart.
    """
    height, width = rows.shape
    colour = np.asarray(style.rgb, dtype=np.float32)
    colour = colour + rng.normal(0.0, 5.0 + 20.0 * difficulty, size=3).astype(np.float32)
    amplitude = 1.0 - 0.5 * difficulty
    offset = float(rng.integers(0, 64))

    if style.texture == 'gradient':
        # Lighter towards the horizon.
        shade = np.clip(rows / max(horizon, 1), 0.0, 1.0) * 45.0 * amplitude
        pattern = np.repeat(shade[..., None], 3, axis=2)
    elif style.texture == 'windows':
        period_x, period_y = int(rng.integers(8, 16)), int(rng.integers(10, 18))
        windows = (((columns + offset) % period_x) < period_x * 0.5) & (
            ((rows + offset) % period_y) < period_y * 0.5)
        pattern = np.repeat((windows * -60.0 * amplitude)[..., None], 3, axis=2)
    elif style.texture == 'grain':
        pattern = rng.normal(0.0, 14.0 * amplitude, size=(height, width, 1)).repeat(3, axis=2)
    elif style.texture == 'tiles':
        period = int(rng.integers(8, 14))
        checker = ((((columns + offset) // period) + ((rows + offset) // period)) % 2) * 2 - 1
        pattern = np.repeat((checker * 18.0 * amplitude)[..., None], 3, axis=2)
    elif style.texture == 'blotches':
        blotches = _smooth_noise(rng, height, width, cell=6) * 35.0 * amplitude
        pattern = blotches[..., None] * np.array([0.6, 1.0, 0.5], dtype=np.float32)
    elif style.texture == 'horizontal_stripes':
        period = int(rng.integers(4, 8))
        stripes = (((rows + offset) // period) % 2) * 2 - 1
        pattern = np.repeat((stripes * 28.0 * amplitude)[..., None], 3, axis=2)
    elif style.texture == 'diagonal_stripes':
        period = int(rng.integers(5, 9))
        stripes = (((rows + columns + offset) // period) % 2) * 2 - 1
        pattern = np.repeat((stripes * 25.0 * amplitude)[..., None], 3, axis=2)
    elif style.texture == 'flat':
        pattern = rng.normal(0.0, 4.0, size=(height, width, 1)).repeat(3, axis=2)
    else:
        raise ValueError(f'Unknown texture {style.texture!r} for class {style.name}. '
                         'Add it to _class_texture.')
    return colour + pattern.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Return (height, width) float32 noise, unit variance at grid points ``cell`` pixels apart.

    Pixels between grid points are bilinear interpolations, so the noise is smooth.
    """
    coarse = rng.normal(size=(height // cell + 2, width // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
