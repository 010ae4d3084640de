"""Finding the images to score: files and folders (recursively), DICOM files grouped by series."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["CXRInput", "find_inputs", "IMAGE_SUFFIXES"]

#: File name endings taken as images when a folder is searched; files without an ending are taken too
#: when they are DICOM (PACS exports often have none).
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".nii.gz")


class CXRInput(NamedTuple):
    """One image to score.

    Attributes:
        path: the file to read.
        name: a unique, file-system-safe name for its outputs (relative path, separators -> ``__``).
        series_instance_uid: for DICOM, the series the file was chosen from ("" otherwise).
        series_files: for DICOM, all files of that series (the chosen one first).
    """

    path: Path
    name: str
    series_instance_uid: str = ""
    series_files: tuple[Path, ...] = ()


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _candidates(root: Path, exclude: Path | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if exclude is not None and (here == exclude or exclude in here.parents):
            continue
        for name in sorted(filenames):
            path = here / name
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES) or ("." not in name and _is_dicom(path)):
                found.append(path)
    return found


def _safe_name(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None and base in path.parents else Path(path.name)
    name = "__".join(rel.parts)
    for suffix in (".nii.gz", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _group_dicom_series(files: Sequence[tuple[Path, Path | None]]) -> tuple[list[tuple[Path, Path | None]], dict[Path, tuple[str, tuple[Path, ...]]]]:
    """Keep one file per DICOM series (lowest InstanceNumber); returns the kept files and their series."""
    import pydicom

    series: dict[str, list[tuple[int, Path, Path | None]]] = defaultdict(list)
    kept: list[tuple[Path, Path | None]] = []
    for path, base in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "InstanceNumber"])
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            number = int(ds.get("InstanceNumber", 0) or 0)
        except Exception:  # unreadable: keep it alone, the loader will report why
            uid, number = "", 0
        if uid:
            series[uid].append((number, path, base))
        else:
            kept.append((path, base))
    info: dict[Path, tuple[str, tuple[Path, ...]]] = {}
    for uid, members in series.items():
        members.sort(key=lambda m: (m[0], str(m[1])))
        kept.append((members[0][1], members[0][2]))
        info[members[0][1]] = (uid, tuple(m[1] for m in members))
    return kept, info


def find_inputs(paths: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[CXRInput]:
    """The images to score under ``paths`` (files, or folders searched recursively), in a stable order.

    DICOM files of one series are one input: the instance with the lowest InstanceNumber is scored and
    the others are listed in ``series_files`` (a chest X-ray series normally holds a single image).
    A path that does not exist is still returned, so that the batch reports it as an error row.

    Args:
        paths: files and folders.
        exclude: a folder to skip (the output folder, when it lies inside an input folder).
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    files: list[tuple[Path, Path | None]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            base = path.resolve()
            files += [(f, base) for f in _candidates(base, skip)]
        else:
            files.append((path, None))
    dicom = [(f, b) for f, b in files if f.is_file() and _is_dicom(f)]
    others = [(f, b) for f, b in files if not (f.is_file() and _is_dicom(f))]
    kept, series = _group_dicom_series(dicom)
    order = {f: i for i, (f, _) in enumerate(files)}
    inputs, used = [], set()
    for path, base in sorted(others + kept, key=lambda fb: order[fb[0]]):
        name = _safe_name(path, base)
        while name in used:  # the same file name in two places given separately
            name += "_"
        used.add(name)
        uid, members = series.get(path, ("", ()))
        inputs.append(CXRInput(path, name, uid, members))
    return inputs
