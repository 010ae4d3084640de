"""Datalists of Brixia-scored chest X-rays: the public BrixIA annotations and the full BrixIA dataset.

Zones are listed A..F (A, B, C: upper, middle, lower zone of the patient's RIGHT lung, the left half
of a frontal image; D, E, F: the patient's LEFT lung), each scored 0..3; ``global`` is their sum.
Every table is read as text, so that score strings such as ``"001230"`` keep zone A's leading zero.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from monai_bsnet.data._common import MISSING_POLICIES, absolute, apply_missing_policy, check_choice, check_unique, csv_line, read_table
from monai_bsnet.errors import CXRInputError
from monai_bsnet.zones import ZONE_NAMES, scores_from_string

__all__ = ["RATERS", "brixia_public_datalist", "brixia_full_datalist", "brixia_full_splits"]

#: Column prefixes of the two raters of the public annotations (``S-A`` .. ``S-F``, ``S-Global``).
RATERS: dict[str, str] = {"senior": "S", "junior": "J"}

_PUBLIC_COLUMNS = ["filename", *[f"{prefix}-{zone}" for prefix in RATERS.values() for zone in ZONE_NAMES]]
_FULL_COLUMNS = ["Filename", "Subject", "ConsensusTestset", "BrixiaScore"]
_PANEL_COLUMNS = ["Filename", *[f"Mean{z}" for z in ZONE_NAMES], *[f"Mode{z}" for z in ZONE_NAMES]]


# ---------------------------------------------------------------------------------------------------
# public BrixIA annotations (images of the COVID-19 Image Data Collection, two raters)


def brixia_public_datalist(root: str | os.PathLike, rater: str = "senior", missing: str = "error") -> list[dict[str, Any]]:
    """The public BrixIA annotations as a MONAI datalist, in the order of ``annotations.csv``.

    Layout of ``root``: ``annotations.csv`` (filename, S-A..S-F, S-Global, J-A..J-F, J-Global),
    ``images.csv`` (filename, patientid, view, license, url; optional) and ``images/<filename>``.

    Each item:
        - ``image``: absolute path of the image file; ``filename``: its name in the CSV.
        - ``label``: the chosen rater's six zone scores (A..F, ints 0..3); ``global``: their sum.
        - ``label_senior``, ``label_junior``: both raters' scores, always present, for agreement.
        - ``patient_id``, ``view`` (PA, AP, AP Supine): from ``images.csv``; ``""`` where it has no
          entry or a blank one (10 of the 138 images of the team's copy), so treat ``""`` as unknown.

    Both raters' rows are checked on every entry: each zone 0..3 and, where given, the global score
    equal to the sum of the zones.

    Args:
        root: the folder (``../shared/data/brixia-public`` in the team's copy).
        rater: ``"senior"`` (``S-*``, 22 years of experience) or ``"junior"`` (``J-*``, 2 years).
        missing: ``"error"`` (default) refuses the dataset when a listed image is absent, naming it;
            ``"skip"`` leaves such entries out.

    Returns:
        A list of dicts, one per annotated image.

    Raises:
        CXRInputError: a CSV is absent or malformed (the message names the CSV, the line and the
            filename of the bad row), a filename is listed twice, or an image is missing.
        ValueError: ``rater`` or ``missing`` is not one of the choices above.
    """
    check_choice("rater", rater, list(RATERS))
    check_choice("missing", missing, MISSING_POLICIES)
    root = absolute(root)
    csv_path = root / "annotations.csv"
    table = read_table(csv_path, _PUBLIC_COLUMNS, "BrixIA public annotations (annotations.csv)")
    check_unique(table, "filename", csv_path)
    patients = _public_image_info(root / "images.csv")
    items = []
    for index, row in table.iterrows():
        both = {name: _rater_scores(row, prefix, csv_path, index) for name, prefix in RATERS.items()}
        patient_id, view = patients.get(row["filename"], ("", ""))
        items.append(
            {
                "image": str(root / "images" / row["filename"]),
                "filename": row["filename"],
                "label": both[rater],
                "global": sum(both[rater]),
                "label_senior": both["senior"],
                "label_junior": both["junior"],
                "patient_id": patient_id,
                "view": view,
            }
        )
    return apply_missing_policy(items, ["image"], missing, csv_path)


def _public_image_info(path: Path) -> dict[str, tuple[str, str]]:
    """filename -> (patient id, view) from ``images.csv``; empty where the file is absent."""
    if not path.is_file():
        return {}
    info = read_table(path, ["filename", "patientid", "view"], "BrixIA public image metadata (images.csv)")
    return {f: (p.strip(), v.strip()) for f, p, v in zip(info["filename"], info["patientid"], info["view"])}


def _rater_scores(row: pd.Series, prefix: str, csv_path: Path, index: int) -> list[int]:
    """One rater's six zone scores of an annotations row, checked against the rater's global score."""
    where = f"line {csv_line(index)} ({row['filename']})"
    cells = [row[f"{prefix}-{zone}"].strip() for zone in ZONE_NAMES]
    # one character per cell, else cells "1", "23" would join into a plausible string; "" is refused
    text = "".join(cells) if all(len(c) == 1 for c in cells) else ""
    try:
        scores = scores_from_string(text)
    except ValueError:
        raise CXRInputError(csv_path, f"{where}: {prefix}-A..{prefix}-F must each be 0, 1, 2 or 3, got {cells}") from None
    total = row.get(f"{prefix}-Global", "").strip()
    if total and (not total.isdigit() or int(total) != sum(scores)):
        raise CXRInputError(
            csv_path, f"{where}: {prefix}-Global {total} is not the sum of the zones {prefix}-A..{prefix}-F {scores} = {sum(scores)}"
        )
    return scores


# ---------------------------------------------------------------------------------------------------
# full BrixIA COVID-19 dataset (4,703 DICOM images, Brescia; consensus test set of five radiologists)


def brixia_full_datalist(
    root: str | os.PathLike,
    dicom_dir: str = "dicom_clean",
    missing: str = "error",
    metadata_csv: str = "metadata_global_v1.csv",
    consensus_csv: str | None = "metadata_consensus_v1.csv",
) -> list[dict[str, Any]]:
    """The full BrixIA COVID-19 dataset as a MONAI datalist, in the order of ``metadata_csv``.

    Layout of ``root``: ``<dicom_dir>/<Filename>`` DICOM files (never opened here),
    ``metadata_global_v1.csv`` (Filename, Subject, StudyDate, Sex, AgeAtStudyDateFiveYear, Modality,
    ConsensusTestset, BrixiaScore, BrixiaScoreGlobal, ...; other columns are ignored; comma or
    semicolon separated) and ``metadata_consensus_v1.csv`` (Filename, MeanA..MeanF, ModeA..ModeF:
    mean and mode of five radiologists on the consensus test set).

    Each item:
        - ``image``: absolute path of the DICOM file; ``filename``: its name in the CSV.
        - ``label``: the six zone scores A..F parsed from ``BrixiaScore`` as a 6-character string
          (``"001230"`` is zone A = 0, B = 0, C = 1, ...); ``global``: their sum.
        - ``patient_id``: ``Subject``; ``study_date`` (``YYYYMMDD``), ``sex``, ``modality`` (CR/DX):
          the CSV's text, ``""`` where absent.
        - ``age_group``: ``AgeAtStudyDateFiveYear``, which is a five-year band index (0 = 0-4 years,
          1 = 5-9, ...), NOT an age in years, hence no ``age`` key; ``age_range``: the band in years,
          ``[5 * g, 5 * g + 4]``. Both None where the CSV leaves it blank.
        - ``consensus``: True for the consensus test set (``ConsensusTestset`` 1, or listed in the
          consensus CSV: either way the image must never be trained on).
        - ``consensus_mean`` (6 floats 0..3) and ``consensus_mode`` (6 ints 0..3): only on consensus
          items, and only where the consensus CSV is present.

    Args:
        root: the dataset folder.
        dicom_dir: the DICOM folder, relative to ``root`` (or absolute).
        missing: ``"error"`` (default) refuses the dataset when a listed DICOM file is absent,
            ``"skip"`` leaves such rows out, ``"ignore"`` does not look at the files at all (to build
            splits on a machine that holds only the CSVs).
        metadata_csv: the global metadata file name inside ``root``.
        consensus_csv: the consensus file name inside ``root``; None or an absent file gives no
            ``consensus_mean``/``consensus_mode``.

    Returns:
        A list of dicts, one per image.

    Raises:
        CXRInputError: a CSV is absent or malformed (the message names the CSV, the line and the
            file of the bad row: a score string that is not six digits 0-3, a ``BrixiaScoreGlobal``
            that is not the sum, a ``ConsensusTestset`` that is not 0/1, a consensus image absent
            from the consensus CSV, ...), a file is listed twice, or a DICOM file is missing.
        ValueError: ``missing`` is not one of the choices above.
    """
    check_choice("missing", missing, (*MISSING_POLICIES, "ignore"))
    root = absolute(root)
    global_csv = root / metadata_csv
    table = read_table(global_csv, _FULL_COLUMNS, f"BrixIA dataset metadata ({metadata_csv})")
    check_unique(table, "Filename", global_csv)
    panel, panel_csv = {}, None
    if consensus_csv is not None and (root / consensus_csv).is_file():
        panel_csv = root / consensus_csv
        panel = _panel_scores(panel_csv)
    items = []
    for index, row in table.iterrows():
        name = row["Filename"].strip()
        where = f"line {csv_line(index)} ({name})"
        label = _score_string(row["BrixiaScore"], global_csv, where)
        total = row.get("BrixiaScoreGlobal", "").strip()
        if total and (not total.isdigit() or int(total) != sum(label)):
            raise CXRInputError(global_csv, f"{where}: BrixiaScoreGlobal {total} is not the sum of BrixiaScore {label} = {sum(label)}")
        flagged = _flag(row["ConsensusTestset"], global_csv, where)
        if flagged and panel_csv is not None and name not in panel:
            raise CXRInputError(panel_csv, f"consensus test image {name} ({global_csv.name} {where}) has no row here")
        group = _age_group(row.get("AgeAtStudyDateFiveYear", ""), global_csv, where)
        item: dict[str, Any] = {
            "image": str(root / dicom_dir / name),
            "filename": name,
            "label": label,
            "global": sum(label),
            "patient_id": row["Subject"].strip(),
            "study_date": row.get("StudyDate", "").strip(),
            "sex": row.get("Sex", "").strip(),
            "age_group": group,
            "age_range": None if group is None else [5 * group, 5 * group + 4],
            "modality": row.get("Modality", "").strip(),
            "consensus": flagged or name in panel,
        }
        if name in panel:
            item["consensus_mean"], item["consensus_mode"] = panel[name]
        items.append(item)
    return items if missing == "ignore" else apply_missing_policy(items, ["image"], missing, global_csv)


def _score_string(text: str, csv_path: Path, where: str) -> list[int]:
    """``BrixiaScore`` -> six ints; the message hints at lost leading zeros, the usual corruption."""
    try:
        return scores_from_string(text)
    except ValueError as e:
        hint = ""
        if text.strip().isdigit() and len(text.strip()) < 6:
            hint = " (leading zeros lost? the string must be read as text, not as a number)"
        raise CXRInputError(csv_path, f"{where}: BrixiaScore: {e}{hint}") from None


def _flag(text: str, csv_path: Path, where: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "1.0", "true"):
        return True
    if value in ("0", "0.0", "false", ""):
        return False
    raise CXRInputError(csv_path, f"{where}: ConsensusTestset must be 0 or 1, got {text!r}")


def _age_group(text: str, csv_path: Path, where: str) -> int | None:
    value = text.strip()
    if not value:
        return None
    try:
        group = float(value)
    except ValueError:
        group = math.nan
    if not (group.is_integer() and 0 <= group <= 30):
        raise CXRInputError(csv_path, f"{where}: AgeAtStudyDateFiveYear is a five-year band index 0, 1, 2, ..., got {text!r}")
    return int(group)


def _panel_scores(path: Path) -> dict[str, tuple[list[float], list[int]]]:
    """Filename -> (mean A..F, mode A..F) of the five-radiologist consensus CSV, checked to 0..3."""
    table = read_table(path, _PANEL_COLUMNS, "BrixIA consensus scores (metadata_consensus_v1.csv)")
    check_unique(table, "Filename", path)
    panel = {}
    for index, row in table.iterrows():
        where = f"line {csv_line(index)} ({row['Filename']})"
        try:
            mean = [float(row[f"Mean{z}"]) for z in ZONE_NAMES]
            mode = [float(row[f"Mode{z}"]) for z in ZONE_NAMES]
        except ValueError:
            raise CXRInputError(path, f"{where}: MeanA..F and ModeA..F must be numbers") from None
        # NaN fails both tests, so a blank cell cannot slip through as a score
        if not all(0 <= v <= 3 for v in mean) or not all(v in (0, 1, 2, 3) for v in mode):
            raise CXRInputError(path, f"{where}: means {mean} must lie in 0..3 and modes {mode} be integers 0..3")
        panel[row["Filename"].strip()] = (mean, [int(v) for v in mode])
    return panel


def brixia_full_splits(
    datalist: Sequence[Mapping[str, Any]], val_fraction: float = 0.1, seed: int = 0, exclude_test_subjects: bool = True
) -> dict[str, list[Mapping[str, Any]]]:
    """Training, validation and test sets of :func:`brixia_full_datalist`, without patient leakage.

    - ``test``: the consensus test set (every item with ``consensus`` True), as the BS-Net authors
      evaluate.
    - ``train`` / ``val``: everything else, split BY SUBJECT (``patient_id``) with scikit-learn's
      ``GroupShuffleSplit``, so that no subject has images on both sides; ``val_fraction`` is the
      fraction of subjects (not of images) sent to validation. Items with a blank ``patient_id``
      form groups of their own.
    - With ``exclude_test_subjects`` (default), the other exams of a subject who has an image in the
      test set are left out of both training and validation: serial exams of one patient look
      alike, so training on them would flatter the test score. They appear in no split.

    Each split keeps the datalist's order. The result depends only on the datalist and ``seed``.

    Args:
        datalist: items with ``consensus`` and ``patient_id`` keys.
        val_fraction: fraction of the training subjects for validation, in [0, 1); 0 gives no
            validation set.
        seed: random state of the subject shuffle.
        exclude_test_subjects: leave the test subjects' other images out of training and validation.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: ``val_fraction`` outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    test = [d for d in datalist if d.get("consensus")]
    test_subjects = {d.get("patient_id") for d in test if d.get("patient_id")} if exclude_test_subjects else set()
    rest = [d for d in datalist if not d.get("consensus") and not (d.get("patient_id") and d.get("patient_id") in test_subjects)]
    groups = [d.get("patient_id") or f"__item{i}" for i, d in enumerate(rest)]
    if val_fraction == 0 or len(set(groups)) < 2:
        return {"train": rest, "val": [], "test": test}
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_index, val_index = next(splitter.split(rest, groups=groups))
    return {"train": [rest[i] for i in sorted(train_index)], "val": [rest[i] for i in sorted(val_index)], "test": test}
