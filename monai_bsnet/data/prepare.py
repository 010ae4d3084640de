"""Build the training folders ``brixia-public/`` and ``lungseg/`` from local copies of the public sources.

No network access: every input is a local copy the user made beforehand.

Sources (layouts as published):

- the BrixIA repository ``BrixIA/Brixia-score-COVID-19``: ``data/public-annotations.csv`` (filename,
  S-A..S-F, S-Global, J-A..J-F, J-Global; 192 rows) and ``data/public-cohen-subset/<filename>``;
  (``public-annotations.csv`` and ``public-cohen-subset/`` at the repository root, as in its first
  releases, are accepted too);
- the COVID-19 Image Data Collection ``ieee8023/covid-chestxray-dataset``: ``metadata.csv``
  (patientid, ..., view, modality, ..., folder, filename, doi, url, license, ...), the images in
  ``<folder>/<filename>`` (``images/``), and ``annotations/covid-severity-scores.csv``: Cohen et al.'s
  severity scores, a few ``## `` comment lines (licence, citation) then ``filename, geographic_mean,
  opacity_mean``;
- the V7 Labs lung masks ``semantic_masks_v7labs_lungs.zip`` shipped in the torchxrayvision package
  (``torchxrayvision/data/``): one PNG per image, ``semantic_masks_v7labs_lungs/<Cohen filename>``
  (the image's own name and suffix, even ``.jpg``), grey 0/255 of the image's size, with 127 where the
  annotators cut a region out of the lungs (pacemaker, markup).

Rules (they reproduce the team's ``../shared/data`` folders):

- ``brixia-public``: the BS-Net authors' split, ``train_test_split(rows, test_size=0.25,
  random_state=23)`` over the rows of the annotations CSV in file order; only the TRAINING part is
  written, and of it only the rows whose image is present in ``public-cohen-subset`` (138 of the 144
  training rows). The held-out 25 % is never written anywhere, nor named in messages.
- ``lungseg``: every V7 mask whose image the collection's metadata lists as a frontal X-ray
  (modality ``X-ray``, view PA, AP or AP Supine) is a candidate ("the full set"); ids are
  ``cohen_<file stem with "." replaced by "_">``; ``split`` is ``test`` for the first 50 ids of the full
  set in sorted order, as BS-Net did for sets without a split. Then every image of a patient who has
  an image in the held-out part of the BrixIA split is left out (the segmentation and alignment stages
  share the scoring network's encoder, so training them on those patients would flatter the held-out
  evaluation), as are pairs whose mask and image sizes differ.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from monai_bsnet.errors import CXRInputError
from monai_bsnet.zones import ZONE_NAMES

__all__ = [
    "BRIXIA_SPLIT",
    "FRONTAL_VIEWS",
    "LUNGSEG_SIZE",
    "LUNGSEG_TEST_COUNT",
    "PreparedFolder",
    "brixia_heldout_rows",
    "default_v7_zip",
    "lungseg_id",
    "mask_has_holes",
    "prepare_brixia_public",
    "prepare_lungseg",
    "prepare_training_data",
]

logger = logging.getLogger(__name__)

#: ``train_test_split`` arguments of the BS-Net authors' loader (``src/datasets/brixiascore_cohen.py``).
BRIXIA_SPLIT: dict[str, Any] = {"test_size": 0.25, "random_state": 23}
#: Views of the collection's metadata that count as frontal chest X-rays for ``lungseg``.
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP", "AP Supine")
#: Side of the ``lungseg`` images and masks.
LUNGSEG_SIZE = 512
#: ``lungseg`` ids of the full set, in sorted order, that form the test split.
LUNGSEG_TEST_COUNT = 50

_ANNOTATION_COLUMNS = ["filename", *[f"S-{z}" for z in ZONE_NAMES], "S-Global", *[f"J-{z}" for z in ZONE_NAMES], "J-Global"]
_IMAGE_INFO_COLUMNS = ["filename", "patientid", "view", "license", "url"]
_SEVERITY_COLUMNS = ["filename", "geographic_mean", "opacity_mean"]
_MANIFEST_COLUMNS = ["id", "original_path", "original_width", "original_height", "patientid", "view", "license", "split"]
_MASK_SUFFIXES = (".png", ".jpg", ".jpeg")
_V7_ZIP_NAME = "semantic_masks_v7labs_lungs.zip"


@dataclass
class PreparedFolder:
    """What a ``prepare_*`` function wrote.

    Attributes:
        path: the finished folder.
        count: images written.
        counts: further counts by what they are (rows read, rows left out and why).
        skipped: ``(name, reason)`` of training-side entries left out (never held-out ones).
    """

    path: Path
    count: int
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# sources


def default_v7_zip() -> Path | None:
    """The V7 lung-mask archive inside the installed torchxrayvision package, or None.

    Found without importing torchxrayvision (which would import torch).
    """
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / _V7_ZIP_NAME
        if path.is_file():
            return path
    return None


def _brixia_sources(brixia_repo: Path) -> tuple[Path, Path]:
    """(annotations CSV, image folder) of a BrixIA repository copy, ``data/`` first, then the root."""
    if not brixia_repo.is_dir():
        raise CXRInputError(brixia_repo, "no such folder: expected a copy of the BrixIA repository BrixIA/Brixia-score-COVID-19")
    for base in (brixia_repo / "data", brixia_repo):
        csv_path, images = base / "public-annotations.csv", base / "public-cohen-subset"
        if csv_path.is_file():
            if not images.is_dir():
                raise CXRInputError(images, "no such folder: expected the BrixIA public images (public-cohen-subset) beside public-annotations.csv")
            return csv_path, images
    raise CXRInputError(
        brixia_repo / "data" / "public-annotations.csv", "no such file: expected the BrixIA public annotations of the BrixIA repository"
    )


def _read_source_csv(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """A source CSV as text (blank cells ""), header names stripped; leading ``#`` comment lines skipped.

    Column names are matched case-insensitively (early collection metadata spells ``Patientid`` and
    `` url``); the table comes back with the ``required`` spellings.
    """
    if not path.is_file():
        raise CXRInputError(path, f"no such file: expected {what}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
        skip = 0
        while skip < len(lines) and (lines[skip].lstrip().startswith("#") or not lines[skip].strip()):
            skip += 1
        if skip == len(lines):
            raise CXRInputError(path, f"empty file: expected {what}")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skiprows=skip, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CXRInputError(path, f"cannot read {what}: {e}") from e
    by_lower = {str(c).strip().lower(): c for c in table.columns}
    absent = [c for c in required if c.lower() not in by_lower]
    if absent:
        raise CXRInputError(path, f"not {what}: missing column(s) {absent}; found {[str(c).strip() for c in table.columns]}")
    table = table.rename(columns={by_lower[c.lower()]: c for c in required})
    return table.reset_index(drop=True)


def _plain_name(name: str, path: Path, where: str) -> str:
    """Refuse file names that would leave their folder (``../x``, ``a/b``) or are blank."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise CXRInputError(path, f"{where}: {name!r} is not a plain file name")
    return name


def _read_annotations(csv_path: Path) -> pd.DataFrame:
    table = _read_source_csv(csv_path, _ANNOTATION_COLUMNS, "the BrixIA public annotations (public-annotations.csv)")
    for index, name in enumerate(table["filename"]):
        _plain_name(name, csv_path, f"line {index + 2}")
    repeated = table.loc[table["filename"].duplicated(), "filename"].unique().tolist()
    if repeated:
        raise CXRInputError(csv_path, f"{len(repeated)} filename(s) listed more than once, e.g. {repeated[0]!r}")
    return table


def brixia_heldout_rows(n_rows: int) -> tuple[list[int], list[int]]:
    """Row indices (training, held out) of the BS-Net authors' split of ``n_rows`` annotation rows.

    ``sklearn.model_selection.train_test_split(rows, test_size=0.25, random_state=23)``: the split
    depends only on the number of rows, not on their content. Both lists come back in file order.
    """
    from sklearn.model_selection import train_test_split

    if n_rows < 2:
        raise ValueError(f"the BrixIA split needs at least 2 annotation rows, got {n_rows}")
    train, test = train_test_split(np.arange(n_rows), **BRIXIA_SPLIT)
    return sorted(int(i) for i in train), sorted(int(i) for i in test)


def _read_metadata(covid_repo: Path) -> tuple[Path, pd.DataFrame]:
    """The collection's ``metadata.csv``: one row per filename (the first, where one is listed twice)."""
    if not covid_repo.is_dir():
        raise CXRInputError(covid_repo, "no such folder: expected a copy of the COVID-19 image data collection ieee8023/covid-chestxray-dataset")
    path = covid_repo / "metadata.csv"
    table = _read_source_csv(path, ["patientid", "view", "license", "url", "filename"], "the COVID-19 image data collection's metadata.csv")
    for optional in ("modality", "folder"):
        match = [c for c in table.columns if str(c).strip().lower() == optional]
        table[optional] = table[match[0]] if match else ""
    table = table[table["filename"].str.strip() != ""]
    return path, table.drop_duplicates("filename", keep="first").set_index("filename", drop=False)


# ---------------------------------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def _atomic_folder(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it becomes ``target`` by a rename.

    On any error the temporary folder is removed and ``target`` is left as it was, so a folder is
    either complete or absent. An existing ``target`` is refused unless ``overwrite``.
    """
    if target.exists() and not overwrite:
        raise CXRInputError(target, "already exists: remove it or pass overwrite=True (--overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield temp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, lineterminator="\n")


def _check_with_reader(source: Path, reader: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Run a dataset reader on a prepared folder; its refusal becomes an error about the source."""
    try:
        return reader(*args, **kwargs)
    except CXRInputError as e:
        raise CXRInputError(source, f"the prepared folder is refused by {reader.__name__}: {e.reason}") from e


# ---------------------------------------------------------------------------------------------------
# brixia-public


def prepare_brixia_public(
    brixia_repo: str | os.PathLike,
    covid_repo: str | os.PathLike,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> PreparedFolder:
    """Build ``brixia-public`` (the training part of the BrixIA public annotations) from local sources.

    Written into ``output`` (the folder itself, e.g. ``data/brixia-public``):

    - ``images/<filename>``: the images of ``public-cohen-subset``, copied byte for byte;
    - ``annotations.csv``: filename, S-A..S-F, S-Global, J-A..J-F, J-Global, the source's text, of the
      training rows whose image is present, in the source's order;
    - ``images.csv``: filename, patientid, view, license, url from the collection's ``metadata.csv``
      (blank where it has no row for the file), same order;
    - ``cohen-severity.csv``: filename, geographic_mean, opacity_mean of Cohen et al.'s scores,
      restricted to these images, in the source's order;
    - ``SOURCES.md``: provenance and licences.

    The training part is that of ``train_test_split(rows, test_size=0.25, random_state=23)`` over
    the annotation rows in file order (:func:`brixia_heldout_rows`). The held-out rows are read (the
    split needs their count) but never written, copied or named.

    Args:
        brixia_repo: a copy of ``BrixIA/Brixia-score-COVID-19`` (``data/public-annotations.csv``,
            ``data/public-cohen-subset/``).
        covid_repo: a copy of ``ieee8023/covid-chestxray-dataset`` (``metadata.csv``,
            ``annotations/covid-severity-scores.csv``).
        output: the folder to create; built under a temporary name beside it and renamed when
            complete, so it is never half-written.
        overwrite: replace an existing ``output`` (only once the new one is complete).

    Returns:
        A :class:`PreparedFolder`: the path, the number of images, counts, and the training rows left
        out for want of an image.

    Raises:
        CXRInputError: a source file or folder is missing or malformed (the message names it and
            why), ``output`` exists without ``overwrite``, or the result fails the dataset readers.
    """
    output = Path(output).expanduser()
    with _atomic_folder(output, overwrite) as temp:
        done = _build_brixia_public(Path(brixia_repo).expanduser(), Path(covid_repo).expanduser(), temp)
    done.path = output
    return done


def _build_brixia_public(brixia_repo: Path, covid_repo: Path, temp: Path) -> PreparedFolder:
    """Write ``brixia-public`` into the empty folder ``temp`` (see :func:`prepare_brixia_public`)."""
    from monai_bsnet.data.brixia import brixia_public_datalist
    from monai_bsnet.data.cohen import cohen_severity_datalist

    csv_path, source_images = _brixia_sources(brixia_repo)
    annotations = _read_annotations(csv_path)
    _, metadata = _read_metadata(covid_repo)
    severity_path = covid_repo / "annotations" / "covid-severity-scores.csv"
    severity = _read_source_csv(severity_path, _SEVERITY_COLUMNS, "Cohen et al.'s severity scores (covid-severity-scores.csv)")

    train_rows, _heldout = brixia_heldout_rows(len(annotations))
    train = annotations.iloc[train_rows]
    present = [(source_images / name).is_file() for name in train["filename"]]
    skipped = [(name, f"listed in {csv_path.name} but not in {source_images}") for name, ok in zip(train["filename"], present) if not ok]
    kept = train[present].reset_index(drop=True)
    if kept.empty:
        raise CXRInputError(source_images, "none of the training images of the BrixIA split is present")

    (temp / "images").mkdir()
    for name in kept["filename"]:
        shutil.copyfile(source_images / name, temp / "images" / name)
    _write_csv(kept[_ANNOTATION_COLUMNS], temp / "annotations.csv")
    info = pd.DataFrame(
        [
            {c: (metadata.at[name, c] if name in metadata.index else "") for c in _IMAGE_INFO_COLUMNS[1:]} | {"filename": name}
            for name in kept["filename"]
        ],
        columns=_IMAGE_INFO_COLUMNS,
    )
    _write_csv(info, temp / "images.csv")
    severity_kept = severity[severity["filename"].isin(set(kept["filename"]))].drop_duplicates("filename")[_SEVERITY_COLUMNS]
    _write_csv(severity_kept, temp / "cohen-severity.csv")
    (temp / "SOURCES.md").write_text(_BRIXIA_SOURCES.format(n=len(kept), n_rows=len(annotations), n_cohen=len(severity_kept)))
    _check_with_reader(csv_path, brixia_public_datalist, temp)
    _check_with_reader(severity_path, cohen_severity_datalist, temp / "cohen-severity.csv", temp / "images")

    for name, reason in skipped:
        logger.warning("brixia-public: left out %s: %s", name, reason)
    counts = {
        "annotation_rows": len(annotations),
        "training_rows": len(train_rows),
        "training_rows_without_image": len(skipped),
        "images": len(kept),
        "cohen_severity_rows": len(severity_kept),
        "without_metadata": int((info["patientid"] == "").sum()),
    }
    return PreparedFolder(temp, len(kept), counts, skipped)


_BRIXIA_SOURCES = """# brixia-public

Built by `bsnet prepare-data` from local copies of the public sources.

- `images/`: {n} original image files, unchanged, from the BrixIA repository `BrixIA/Brixia-score-COVID-19`
  (data/public-cohen-subset): the images present of the TRAINING part of the BS-Net authors' split
  (`sklearn.model_selection.train_test_split(rows, test_size=0.25, random_state=23)` over the {n_rows}
  rows of data/public-annotations.csv). The held-out part is not here: keep it apart for evaluation.
- `annotations.csv`: Brixia scores of each lung zone (0-3) and their sum, senior (`S-*`) and junior
  (`J-*`) radiologist. Zones A, B, C: upper, middle, lower zone of the patient's RIGHT lung (the left
  half of a standard frontal image); D, E, F: the LEFT lung.
- `images.csv`: patient id, view, licence, source URL from the collection's metadata.csv (blank where
  it has no entry).
- `cohen-severity.csv`: for {n_cohen} of these images, Cohen et al.'s severity scores (mean of 3 raters),
  `geographic_mean` (0-8) and `opacity_mean` (0-6), from annotations/covid-severity-scores.csv.

Licences: images, COVID-19 Image Data Collection (Cohen et al., arXiv:2003.11597), each its own
licence (column `license`; blank = unstated); Brixia annotations, BrixIA project, CC BY-NC-SA 4.0
(Signoroni et al., Medical Image Analysis 71 (2021) 102046); Cohen severity scores, CC BY-SA
(Cohen et al., Cureus 12(7) e9448, arXiv:2005.11856). Research use only.
"""


# ---------------------------------------------------------------------------------------------------
# lungseg


def lungseg_id(filename: str) -> str:
    """The ``lungseg`` id of a collection file name: ``cohen_`` + its stem with ``.`` replaced by ``_``."""
    return "cohen_" + os.path.splitext(filename)[0].replace(".", "_")


def mask_has_holes(mask: np.ndarray) -> bool:
    """Whether a V7 lung mask has a region cut out of the lungs (pacemaker, markup, ...).

    True where the annotators' cut-out value appears (any grey strictly between 0 and 255; V7 writes
    127 there) or where the lungs (value 255) enclose a hole, i.e. ``scipy.ndimage.binary_fill_holes``
    changes them. The first rule alone finds the team's 48 masks; the second catches enclosed holes
    of masks written without the cut-out value.
    """
    from scipy import ndimage

    if np.any((mask > 0) & (mask < 255)):
        return True
    lungs = mask == 255
    return bool(np.any(ndimage.binary_fill_holes(lungs) != lungs))


def _grey_u8(image: Image.Image) -> Image.Image:
    """8-bit grey of any PIL image: RGB(A)/palette by PIL's luma; 16-bit and float scaled by their maximum."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) if array.size else 0.0
        scaled = np.clip(array / top * 255.0, 0, 255) if top > 0 else np.zeros_like(array)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return image.convert("L")


def _lungseg_pair(image_path: Path, mask_bytes: bytes, zip_path: Path, member: str) -> tuple[Image.Image, Image.Image, tuple[int, int], bool] | str:
    """(512 grey image, 512 0/255 mask, original (width, height), has holes), or why the pair is left out."""
    try:
        with Image.open(image_path) as source:
            source.load()
            image = _grey_u8(source)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CXRInputError(image_path, f"cannot read the image: {e}") from e
    try:
        with Image.open(io.BytesIO(mask_bytes)) as source:
            mask = np.asarray(source.convert("L") if source.mode != "L" else source).copy()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CXRInputError(zip_path, f"{member}: cannot read the mask: {e}") from e
    if (mask.shape[1], mask.shape[0]) != image.size:
        return f"mask {mask.shape[1]}x{mask.shape[0]} and image {image.size[0]}x{image.size[1]} differ in size"
    size = (LUNGSEG_SIZE, LUNGSEG_SIZE)
    small_image = image.resize(size, Image.BILINEAR)
    small_mask = Image.fromarray(np.where(np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST)) == 255, 255, 0).astype(np.uint8))
    return small_image, small_mask, image.size, mask_has_holes(mask)


def _v7_masks(v7_zip: Path) -> dict[str, str]:
    """Cohen file name -> archive member of the V7 mask archive (any folder prefix)."""
    if not v7_zip.is_file():
        raise CXRInputError(v7_zip, f"no such file: expected the V7 lung-mask archive {_V7_ZIP_NAME} (torchxrayvision/data/)")
    try:
        with zipfile.ZipFile(v7_zip) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CXRInputError(v7_zip, f"not a zip archive: {e}") from e
    masks = {}
    for member in members:
        name = member.rsplit("/", 1)[-1]
        if name and not member.endswith("/") and name.lower().endswith(_MASK_SUFFIXES):
            masks.setdefault(name, member)
    if not masks:
        raise CXRInputError(v7_zip, "holds no mask images: expected semantic_masks_v7labs_lungs/<Cohen filename> entries")
    return masks


def prepare_lungseg(
    covid_repo: str | os.PathLike,
    v7_zip: str | os.PathLike,
    brixia_repo: str | os.PathLike,
    output: str | os.PathLike,
    *,
    test_count: int = LUNGSEG_TEST_COUNT,
    overwrite: bool = False,
    workers: int | None = None,
) -> PreparedFolder:
    """Build ``lungseg`` (512 x 512 chest X-rays with V7 lung masks) from local sources.

    Written into ``output`` (the folder itself, e.g. ``data/lungseg``):

    - ``images/<id>.png``: the collection's image as 8-bit grey (PIL's luma for colour, alpha
      dropped), resized to 512 x 512 bilinear, aspect ratio not kept;
    - ``masks/<id>.png``: the V7 mask's lungs (value 255) as 0/255, nearest-neighbour resized;
    - ``manifest.csv``: id, original_path (``<folder>/<filename>`` in the collection),
      original_width, original_height, patientid, view, license, split; sorted by id;
    - ``masks_with_holes.txt``: the ids whose mask has a region cut out (:func:`mask_has_holes`);
    - ``SOURCES.md``: provenance and licences.

    The full set is every mask of ``v7_zip`` whose file the collection's ``metadata.csv`` lists as a
    frontal X-ray (modality ``X-ray`` where the column exists, view in :data:`FRONTAL_VIEWS`); its
    first ``test_count`` ids in sorted order are the test split. Then left out: every image of a
    patient with an image in the held-out part of the BrixIA split (and the held-out files
    themselves), and pairs whose mask and image sizes differ.

    Args:
        covid_repo: a copy of ``ieee8023/covid-chestxray-dataset`` (``metadata.csv``, ``images/``).
        v7_zip: ``semantic_masks_v7labs_lungs.zip`` (:func:`default_v7_zip` finds torchxrayvision's).
        brixia_repo: a copy of ``BrixIA/Brixia-score-COVID-19``: only its annotations CSV is read, to
            know the held-out patients.
        output: the folder to create; built under a temporary name beside it and renamed when
            complete.
        test_count: size of the test split, counted in the full set (50, as BS-Net).
        overwrite: replace an existing ``output`` (only once the new one is complete).
        workers: threads decoding and resizing images (default: up to 8).

    Returns:
        A :class:`PreparedFolder`: the path, the number of pairs, counts, and the pairs left out for
        a size mismatch.

    Raises:
        CXRInputError: a source is missing or malformed (names it: the metadata, the archive, an image
            the metadata lists as frontal but the local copy lacks), ``output`` exists without
            ``overwrite``, or the result fails :func:`~monai_bsnet.data.lungseg_datalist`.
    """
    if test_count < 0:
        raise ValueError(f"test_count must be >= 0, got {test_count}")
    output = Path(output).expanduser()
    paths = (Path(covid_repo).expanduser(), Path(v7_zip).expanduser(), Path(brixia_repo).expanduser())
    plan = _plan_lungseg(*paths, test_count)
    with _atomic_folder(output, overwrite) as temp:
        done = _build_lungseg(plan, temp, workers)
    done.path = output
    return done


@dataclass
class _LungsegPlan:
    """What :func:`prepare_lungseg` will write, worked out (and every source checked) before writing."""

    metadata_path: Path
    v7_zip: Path
    masks: dict[str, str]
    full_set: int
    heldout_excluded: int
    test_count: int
    test_ids: set[str]
    kept: list[tuple[str, str, pd.Series, str, Path]]  # id, filename, metadata row, folder, image path


def _plan_lungseg(covid_repo: Path, v7_zip: Path, brixia_repo: Path, test_count: int) -> _LungsegPlan:
    metadata_path, metadata = _read_metadata(covid_repo)
    masks = _v7_masks(v7_zip)
    csv_path, _ = _brixia_sources(brixia_repo)
    annotations = _read_annotations(csv_path)
    _, heldout_rows = brixia_heldout_rows(len(annotations))
    heldout_files = set(annotations["filename"].iloc[heldout_rows])
    heldout_patients = {metadata.at[f, "patientid"].strip() for f in heldout_files if f in metadata.index} - {""}

    candidates = []  # (id, filename, metadata row)
    for name in sorted(masks):
        if name not in metadata.index:
            continue
        row = metadata.loc[name]
        modality = row["modality"].strip()
        if row["view"].strip() not in FRONTAL_VIEWS or (modality and modality.lower() != "x-ray"):
            continue
        candidates.append((lungseg_id(name), name, row))
    ids = [c[0] for c in candidates]
    if len(set(ids)) != len(ids):
        clash = sorted({i for i in ids if ids.count(i) > 1})
        raise CXRInputError(v7_zip, f"masks of different files map to one lungseg id, e.g. {clash[0]!r}")
    if not candidates:
        raise CXRInputError(v7_zip, f"none of its masks belongs to a frontal X-ray listed in {metadata_path}")
    candidates.sort(key=lambda c: c[0])
    test_ids = {c[0] for c in candidates[:test_count]}

    kept, excluded = [], 0
    for item_id, name, row in candidates:
        if name in heldout_files or row["patientid"].strip() in heldout_patients:
            excluded += 1
            continue
        folder = row["folder"].strip() or "images"
        image_path = covid_repo / _plain_name(folder, metadata_path, "folder") / _plain_name(name, metadata_path, "filename")
        if not image_path.is_file():
            raise CXRInputError(image_path, f"listed in {metadata_path.name} as a frontal X-ray with a V7 mask, but missing from the local copy")
        kept.append((item_id, name, row, folder, image_path))
    return _LungsegPlan(metadata_path, v7_zip, masks, len(candidates), excluded, test_count, test_ids, kept)


def _build_lungseg(plan: _LungsegPlan, temp: Path, workers: int | None) -> PreparedFolder:
    """Write ``lungseg`` into the empty folder ``temp`` (see :func:`prepare_lungseg`)."""
    from monai_bsnet.data.lung_masks import lungseg_datalist

    def work(entry: tuple[Any, ...]) -> Any:
        _, name, _, _, image_path = entry
        with zipfile.ZipFile(plan.v7_zip) as archive:
            data = archive.read(plan.masks[name])
        return _lungseg_pair(image_path, data, plan.v7_zip, plan.masks[name])

    skipped, manifest, holes = [], [], []
    (temp / "images").mkdir()
    (temp / "masks").mkdir()
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for entry, result in zip(plan.kept, pool.map(work, plan.kept)):
            item_id, name, row, folder, _ = entry
            if isinstance(result, str):
                skipped.append((name, result))
                continue
            image, mask, (width, height), has_holes = result
            image.save(temp / "images" / f"{item_id}.png")
            mask.save(temp / "masks" / f"{item_id}.png")
            if has_holes:
                holes.append(item_id)
            manifest.append(
                {
                    "id": item_id,
                    "original_path": f"{folder}/{name}",
                    "original_width": width,
                    "original_height": height,
                    "patientid": row["patientid"],
                    "view": row["view"],
                    "license": row["license"],
                    "split": "test" if item_id in plan.test_ids else "train",
                }
            )
    if not manifest:
        raise CXRInputError(plan.v7_zip, "no image/mask pair is left to write")
    _write_csv(pd.DataFrame(manifest, columns=_MANIFEST_COLUMNS), temp / "manifest.csv")
    (temp / "masks_with_holes.txt").write_text("".join(f"{i}\n" for i in holes))
    n_test = sum(m["split"] == "test" for m in manifest)
    (temp / "SOURCES.md").write_text(
        _LUNGSEG_SOURCES.format(n=len(manifest), n_full=plan.full_set, test_count=plan.test_count, n_test=n_test)
    )
    _check_with_reader(plan.metadata_path, lungseg_datalist, temp)

    for name, reason in skipped:
        logger.warning("lungseg: left out %s: %s", name, reason)
    counts = {
        "masks_in_archive": len(plan.masks),
        "full_set": plan.full_set,
        "left_out_heldout_patients": plan.heldout_excluded,
        "left_out_size_mismatch": len(skipped),
        "pairs": len(manifest),
        "test": n_test,
        "train": len(manifest) - n_test,
        "masks_with_holes": len(holes),
    }
    return PreparedFolder(temp, len(manifest), counts, skipped)


_LUNGSEG_SOURCES = """# lungseg

Built by `bsnet prepare-data` from local copies of the public sources.

- `images/<id>.png`: 8-bit grey frontal chest X-rays (PA, AP, AP supine), resized to 512x512
  (bilinear, aspect ratio not kept, as the BS-Net authors did). {n} pairs.
- `masks/<id>.png`: 0/255 mask of both lungs together, 512x512, nearest-neighbour resized.
- `manifest.csv`: id, original path and size, patient id, view, image licence, split (`test` = first
  {test_count} ids in sorted order of the full set of {n_full} frontal X-rays with a mask; {n_test} of those
  remain here).
- `masks_with_holes.txt`: masks where the annotators cut out a region (pacemaker, markup): the hole
  is not lung-free tissue.
- Left out: every image of a patient who has an image in the held-out part of the BrixIA split.

Sources and licences:
- Images: COVID-19 Image Data Collection (Cohen et al., arXiv:2003.11597), per-image licences in
  `manifest.csv` (blank = unstated).
- Masks: V7 Labs COVID-19 X-ray lung annotations, CC BY 4.0, as keyed by Cohen filename in the
  `semantic_masks_v7labs_lungs.zip` shipped with the torchxrayvision package (Apache-2.0).
The masks were drawn by trained annotators with model assistance, not by radiologists. Research use only.
"""


# ---------------------------------------------------------------------------------------------------
# both


def prepare_training_data(
    brixia_repo: str | os.PathLike,
    covid_repo: str | os.PathLike,
    v7_zip: str | os.PathLike | None,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict[str, PreparedFolder]:
    """Build ``output/brixia-public`` and ``output/lungseg`` (``bsnet prepare-data``).

    Every source is checked before anything is written, so a missing one leaves ``output`` untouched;
    both folders are then built under temporary names beside their targets and renamed only once both
    are complete (rules: :func:`prepare_brixia_public`, :func:`prepare_lungseg`).

    Args:
        brixia_repo: a copy of ``BrixIA/Brixia-score-COVID-19``.
        covid_repo: a copy of ``ieee8023/covid-chestxray-dataset``.
        v7_zip: the V7 mask archive; None takes torchxrayvision's (:func:`default_v7_zip`).
        output: the parent folder of the two.
        overwrite: replace existing folders.

    Returns:
        ``{"brixia-public": PreparedFolder, "lungseg": PreparedFolder}``.

    Raises:
        CXRInputError: as the two functions, naming the missing or malformed source.
    """
    brixia_repo, covid_repo, output = Path(brixia_repo).expanduser(), Path(covid_repo).expanduser(), Path(output).expanduser()
    if v7_zip is None:
        v7_zip = default_v7_zip()
        if v7_zip is None:
            raise CXRInputError(_V7_ZIP_NAME, "torchxrayvision is not installed: pass the V7 lung-mask archive (--v7-zip)")
    v7_zip = Path(v7_zip).expanduser()
    plan = _plan_lungseg(covid_repo, v7_zip, brixia_repo, LUNGSEG_TEST_COUNT)  # checks every source but the severity CSV
    severity = covid_repo / "annotations" / "covid-severity-scores.csv"
    _read_source_csv(severity, _SEVERITY_COLUMNS, "Cohen et al.'s severity scores (covid-severity-scores.csv)")
    for name in ("brixia-public", "lungseg"):
        if (output / name).exists() and not overwrite:
            raise CXRInputError(output / name, "already exists: remove it or pass overwrite=True (--overwrite)")
    # both folders are built under temporary names; they are renamed only once both are complete
    with _atomic_folder(output / "brixia-public", overwrite) as brixia_temp, _atomic_folder(output / "lungseg", overwrite) as lungseg_temp:
        done = {
            "brixia-public": _build_brixia_public(brixia_repo, covid_repo, brixia_temp),
            "lungseg": _build_lungseg(plan, lungseg_temp, None),
        }
    for name, folder in done.items():
        folder.path = output / name
    return done
