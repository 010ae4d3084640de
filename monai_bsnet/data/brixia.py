"""Datalists of Brixia-scored chest X-rays: the public BrixIA annotations and the full BrixIA layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from monai_bsnet.errors import CXRInputError
from monai_bsnet.zones import ZONE_NAMES, scores_from_string

__all__ = ["RATERS", "brixia_public_datalist", "brixia_full_datalist", "brixia_full_splits"]

#: Column prefixes of the two raters in the public annotations.
RATERS = {"senior": "S", "junior": "J"}


def _zone_scores(row: pd.Series, prefix: str, csv_path: Path) -> list[int]:
    try:
        scores = [int(row[f"{prefix}-{z}"]) for z in ZONE_NAMES]
    except (KeyError, ValueError) as e:
        raise CXRInputError(csv_path, f"row {row['filename']!r}: missing or non-integer {prefix}-A..F scores ({e})") from e
    if any(s < 0 or s > 3 for s in scores):
        raise CXRInputError(csv_path, f"row {row['filename']!r}: {prefix} zone scores {scores} outside 0..3")
    if f"{prefix}-Global" in row and int(row[f"{prefix}-Global"]) != sum(scores):
        raise CXRInputError(
            csv_path, f"row {row['filename']!r}: {prefix}-Global {row[f'{prefix}-Global']} is not the sum of the zones {scores}"
        )
    return scores


def brixia_public_datalist(root: str | os.PathLike, rater: str = "senior", missing: str = "error") -> list[dict[str, Any]]:
    """The public BrixIA annotations (``annotations.csv``, ``images.csv``, ``images/``) as a datalist.

    Each item: ``image`` (path), ``label`` (six scores A..F of the chosen rater), ``global``,
    ``label_senior``, ``label_junior`` (both raters, for agreement studies), ``patient_id`` and
    ``view`` (from ``images.csv``), ``filename``.

    Args:
        root: the folder holding the two CSV files and ``images/``.
        rater: ``"senior"`` (S-*, 22 years of experience) or ``"junior"`` (J-*, 2 years).
        missing: ``"error"`` to refuse an annotation whose image is absent, ``"skip"`` to leave it out.
    """
    if rater not in RATERS:
        raise ValueError(f"rater must be one of {sorted(RATERS)}, got {rater!r}")
    root = Path(root)
    csv_path = root / "annotations.csv"
    if not csv_path.is_file():
        raise CXRInputError(csv_path, "no such file: not a BrixIA public annotations folder")
    annotations = pd.read_csv(csv_path, dtype={"filename": str})
    info = pd.read_csv(root / "images.csv", dtype=str).set_index("filename") if (root / "images.csv").is_file() else None
    items = []
    for _, row in annotations.iterrows():
        image = root / "images" / row["filename"]
        if not image.is_file():
            if missing == "skip":
                continue
            raise CXRInputError(image, f"image listed in {csv_path.name} is missing")
        both = {name: _zone_scores(row, prefix, csv_path) for name, prefix in RATERS.items()}
        extra = info.loc[row["filename"]] if info is not None and row["filename"] in info.index else {}
        items.append(
            {
                "image": str(image),
                "filename": row["filename"],
                "label": both[rater],
                "global": sum(both[rater]),
                "label_senior": both["senior"],
                "label_junior": both["junior"],
                "patient_id": str(extra.get("patientid", "") if len(extra) else ""),
                "view": str(extra.get("view", "") if len(extra) else ""),
            }
        )
    return items


def brixia_full_datalist(
    root: str | os.PathLike, dicom_dir: str = "dicom_clean", check_files: bool = True
) -> list[dict[str, Any]]:
    """The full BrixIA COVID-19 dataset layout: DICOM files and ``metadata_global_v1.csv``.

    ``BrixiaScore`` is read as a 6-character string (zones A..F; leading zeros matter). Rows of the
    consensus test set (``ConsensusTestset`` 1) get ``consensus_mean`` and ``consensus_mode`` from
    ``metadata_consensus_v1.csv`` (``MeanA..F``, ``ModeA..F``) when that file is present.

    Each item: ``image``, ``filename``, ``label``, ``global``, ``patient_id`` (``Subject``),
    ``study_date``, ``sex``, ``age`` (``AgeAtStudyDateFiveYear``), ``modality``, ``consensus`` (bool)
    and, for consensus rows, ``consensus_mean`` (6 floats) and ``consensus_mode`` (6 ints).

    Args:
        root: the dataset folder.
        dicom_dir: the folder of DICOM files inside ``root``.
        check_files: refuse rows whose DICOM file is absent.
    """
    root = Path(root)
    global_csv = root / "metadata_global_v1.csv"
    if not global_csv.is_file():
        raise CXRInputError(global_csv, "no such file: not a BrixIA dataset folder")
    table = pd.read_csv(global_csv, dtype=str, keep_default_na=False)
    consensus: dict[str, pd.Series] = {}
    consensus_csv = root / "metadata_consensus_v1.csv"
    if consensus_csv.is_file():
        consensus = {str(r["Filename"]): r for _, r in pd.read_csv(consensus_csv, dtype={"Filename": str}).iterrows()}
    items = []
    for _, row in table.iterrows():
        name = row["Filename"]
        try:
            label = scores_from_string(row["BrixiaScore"])
        except ValueError as e:
            raise CXRInputError(global_csv, f"row {name!r}: {e}") from e
        image = root / dicom_dir / name
        if check_files and not image.is_file():
            raise CXRInputError(image, f"DICOM file listed in {global_csv.name} is missing")
        item: dict[str, Any] = {
            "image": str(image),
            "filename": name,
            "label": label,
            "global": sum(label),
            "patient_id": row.get("Subject", ""),
            "study_date": row.get("StudyDate", ""),
            "sex": row.get("Sex", ""),
            "age": row.get("AgeAtStudyDateFiveYear", ""),
            "modality": row.get("Modality", ""),
            "consensus": str(row.get("ConsensusTestset", "0")).strip() in ("1", "True", "true"),
        }
        if item["consensus"] and name in consensus:
            c = consensus[name]
            item["consensus_mean"] = [float(c[f"Mean{z}"]) for z in ZONE_NAMES]
            item["consensus_mode"] = [int(c[f"Mode{z}"]) for z in ZONE_NAMES]
        items.append(item)
    return items


def brixia_full_splits(datalist: list[dict[str, Any]], val_fraction: float = 0.1, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Train/validation/test splits of :func:`brixia_full_datalist`.

    ``test`` is the consensus set. Training and validation never hold a consensus image, nor any
    image of a subject who has one in the consensus set (their other exams would leak the patient),
    and are split by subject, so that no subject is on both sides.
    """
    test = [d for d in datalist if d["consensus"]]
    test_subjects = {d["patient_id"] for d in test}
    rest = [d for d in datalist if not d["consensus"] and d["patient_id"] not in test_subjects]
    if not rest or val_fraction <= 0:
        return {"train": rest, "val": [], "test": test}
    groups = [d["patient_id"] or f"__{i}" for i, d in enumerate(rest)]
    train_index, val_index = next(GroupShuffleSplit(1, test_size=val_fraction, random_state=seed).split(rest, groups=groups))
    return {"train": [rest[i] for i in sorted(train_index)], "val": [rest[i] for i in sorted(val_index)], "test": test}
