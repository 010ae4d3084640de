"""Writing results: the JSON record, the CSV table, the lung mask, the zone map and the overlay picture.

Every file is written under a temporary name and renamed into place, and :func:`write_image_outputs`
removes what it wrote when one of its files fails: an image yields all of its files or none.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from monai_bsnet.zones import ZONE_NAMES

__all__ = [
    "RESULT_COLUMNS",
    "SCORE_COLOURS",
    "atomic_path",
    "write_json",
    "write_results_csv",
    "csv_row",
    "render_overlay",
    "write_image_outputs",
]

#: Columns of ``results.csv``, one row per input.
RESULT_COLUMNS = ("input", "status", *ZONE_NAMES, "global", "global_expected", "geographic_extent", "opacity", "error")
#: Colours of the scores 0..3 (green .. red), as in the BrixIA figures.
SCORE_COLOURS = ((46, 204, 64), (255, 220, 0), (255, 133, 27), (255, 40, 40))


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_ready(value.item())
    return value


def write_json(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_ready(record), indent=2) + "\n")
    return Path(path)


def csv_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``results.csv`` row of a result record (``status`` ok) or an error record."""
    row = {"input": record["input"], "status": record["status"], "error": record.get("error", "")}
    if record["status"] == "ok":
        for zone in ZONE_NAMES:
            row[zone] = record["zones"][zone]["score"]
        row["global"] = record["global_score"]
        row["global_expected"] = f"{record['global_expected']:.3f}"
        for key in ("geographic_extent", "opacity"):  # Cohen et al.'s scores: blank without a mapping
            row[key] = "" if record.get(key) is None else f"{record[key]:.2f}"
    return row


def write_results_csv(records: Iterable[Mapping[str, Any]], path: str | os.PathLike, columns: Sequence[str] = RESULT_COLUMNS) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for record in records:
                writer.writerow(csv_row(record))
    return Path(path)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_overlay(
    image: np.ndarray,
    lung: np.ndarray,
    zone_index: np.ndarray,
    zone_labels: np.ndarray,
    scores: Sequence[int],
    model_version: str,
    max_side: int = 1024,
) -> Image.Image:
    """The radiograph with lung contour, zones coloured by score, zone letters and scores, the global
    score, the patient's R/L sides and the model version.

    Args:
        image: (H, W) grey image in [0, 1].
        lung: (H, W) boolean lung mask.
        zone_index: (H, W) zone index 0..5 (A..F), -1 outside the zones.
        zone_labels: (H, W) labels 0..4 from :func:`monai_bsnet.inference.zone_map.zone_label_map`.
        scores: six zone scores, A..F.
        model_version: printed in a corner, so that a picture always says what made it.
        max_side: the picture is shrunk to this side at most (overlays are for looking at).
    """
    from skimage.segmentation import find_boundaries

    height, width = image.shape
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    labels = np.asarray(Image.fromarray(zone_labels.astype(np.uint8)).resize(size, Image.NEAREST))
    index = np.asarray(Image.fromarray((zone_index + 1).astype(np.uint8)).resize(size, Image.NEAREST)).astype(int) - 1
    lung_small = np.asarray(Image.fromarray(lung.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0

    rgb = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)
    colours = np.array(((0, 0, 0),) + SCORE_COLOURS, dtype=np.float32)
    tinted = labels > 0
    rgb[tinted] = 0.65 * rgb[tinted] + 0.35 * colours[labels[tinted]]
    rgb[find_boundaries(lung_small, mode="inner")] = (0, 200, 255)
    picture = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(picture)
    side = min(size)
    font, small = _font(max(12, side // 22)), _font(max(10, side // 40))
    step = 4  # letter positions need no full-resolution search
    coarse_index, coarse_lung = index[::step, ::step], lung_small[::step, ::step]
    for z, name in enumerate(ZONE_NAMES):
        ys, xs = np.nonzero((coarse_index == z) & coarse_lung)  # the letter goes on the zone's lung
        if len(ys) == 0:
            ys, xs = np.nonzero(coarse_index == z)
        if len(ys) == 0:
            continue
        ys, xs = ys * step, xs * step
        text = f"{name}:{int(scores[z])}"
        draw.text((float(xs.mean()), float(ys.mean())), text, fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
    total = sum(int(s) for s in scores)
    draw.text((size[0] / 2, 4), f"Brixia {total}/18", fill=(255, 255, 255), font=font, anchor="ma", stroke_width=2, stroke_fill=(0, 0, 0))
    # laterality: the patient's right is on the left of a frontal image
    draw.text((6, size[1] / 2), "R", fill=(255, 255, 0), font=font, anchor="lm", stroke_width=2, stroke_fill=(0, 0, 0))
    draw.text((size[0] - 6, size[1] / 2), "L", fill=(255, 255, 0), font=font, anchor="rm", stroke_width=2, stroke_fill=(0, 0, 0))
    draw.text((4, size[1] - 4), f"{model_version} - research use only", fill=(200, 200, 200), font=small, anchor="ld")
    return picture


def write_image_outputs(
    output_dir: Path,
    name: str,
    record: dict[str, Any],
    lung: np.ndarray,
    zone_labels: np.ndarray,
    overlay: Image.Image,
    nifti_reference: str | os.PathLike | None = None,
    written_before: Mapping[str, Path] | None = None,
) -> dict[str, str]:
    """Write one image's lung mask, zone map, overlay and JSON record; all of them or none.

    Masks are PNG (lung 0/255, zone map with the labels 0..4) or, for a NIfTI input, NIfTI files in
    the input's own voxel grid and affine. The written paths are added to ``record["outputs"]``, with
    ``written_before`` (files of this image written by the caller, such as DICOM SEG/SR), which are
    removed too if this fails.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    nifti = nifti_reference is not None
    suffix = ".nii.gz" if nifti else ".png"
    paths = {
        "lung_mask": output_dir / f"{name}_lung{suffix}",
        "zone_map": output_dir / f"{name}_zones{suffix}",
        "overlay": output_dir / f"{name}_overlay.png",
        "record": output_dir / f"{name}.json",
    }
    earlier = dict(written_before or {})
    written: list[Path] = list(earlier.values())
    try:
        for key, array in (("lung_mask", lung.astype(np.uint8) * (1 if nifti else 255)), ("zone_map", zone_labels.astype(np.uint8))):
            with atomic_path(paths[key]) as tmp:
                if nifti:
                    _save_like_nifti(array, nifti_reference, tmp)
                else:
                    Image.fromarray(array).save(tmp, format="PNG", compress_level=1)  # fast; masks compress well anyway
            written.append(paths[key])
        with atomic_path(paths["overlay"]) as tmp:
            overlay.save(tmp, format="PNG", compress_level=1)
        written.append(paths["overlay"])
        record["outputs"] = {k: str(v) for k, v in {**paths, **earlier}.items() if k != "record"}
        write_json(record, paths["record"])
        written.append(paths["record"])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        record.pop("outputs", None)
        raise
    return record["outputs"]


def _save_like_nifti(array: np.ndarray, reference: str | os.PathLike, path: Path) -> None:
    """Save a (rows, columns) array in the voxel grid of the NIfTI image it was computed from."""
    import nibabel as nib

    ref = nib.load(str(reference))
    data = array.T.reshape(ref.shape)  # back to NIfTI's (x = column, y = row[, 1]) order
    image = nib.Nifti1Image(data, ref.affine)
    image.set_qform(ref.affine, code=int(ref.header["qform_code"]) or 1)
    nib.save(image, str(path) + ".nii.gz")
    os.replace(str(path) + ".nii.gz", path)
