"""Serial monitoring: each patient's Brixia scores over time, as one HTML page with a timeline per patient.

The Brixia score is used to follow a patient day by day. :func:`write_patient_report` reads the JSON
records that ``bsnet predict`` wrote (patient id and study date come from the DICOM tags) and, for
inputs without them, a metadata CSV that maps file names to patients and dates.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from monai_bsnet.zones import ZONE_LUNG, ZONE_NAMES

__all__ = ["load_exams", "write_patient_report"]

_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%Y")


def _parse_date(text: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def load_exams(
    results: str | os.PathLike,
    metadata_csv: str | os.PathLike | None = None,
    file_column: str = "filename",
    patient_column: str = "patient_id",
    date_column: str = "date",
) -> list[dict[str, Any]]:
    """The scored exams of a ``bsnet predict`` output folder (or its ``results.csv``).

    Each exam: ``input``, ``patient_id``, ``date`` (a ``datetime.date`` or None), ``global_score`` and
    ``zones`` (scores A..F). The metadata CSV, when given, fills patient and date where the record
    has none (PNG/JPEG inputs); rows are matched on the input's file name.
    """
    folder = Path(results)
    folder = folder.parent if folder.is_file() else folder
    extra: dict[str, Mapping[str, str]] = {}
    if metadata_csv is not None:
        with open(metadata_csv, newline="") as f:
            extra = {row[file_column]: row for row in csv.DictReader(f)}
    exams = []
    with open(folder / "results.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["status"] == "ok"]
    records = {}
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("status") == "ok":
            records[record["input"]] = record
    for row in rows:
        record = records.get(row["input"], {})
        image = record.get("image", {})
        meta = extra.get(os.path.basename(row["input"]), {})
        patient = image.get("patient_id") or meta.get(patient_column, "")
        when = _parse_date(image.get("study_date") or meta.get(date_column, "") or "")
        exams.append(
            {
                "input": row["input"],
                "patient_id": str(patient).strip() or "unknown",
                "date": when,
                "global_score": int(row["global"]),
                "zones": [int(row[z]) for z in ZONE_NAMES],
            }
        )
    return exams


def _timeline_png(exams: list[dict[str, Any]], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dated = all(e["date"] is not None for e in exams)
    x = [e["date"] for e in exams] if dated else list(range(1, len(exams) + 1))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1.4]})
    top.plot(x, [e["global_score"] for e in exams], marker="o", color="black")
    top.set_ylim(-0.5, 18.5)
    top.set_ylabel("global score (0-18)")
    top.set_title(title)
    for z, name in enumerate(ZONE_NAMES):
        style = "-" if ZONE_LUNG[name] == "right" else "--"
        bottom.plot(x, [e["zones"][z] for e in exams], style, marker=".", label=f"{name} ({ZONE_LUNG[name][0].upper()})")
    bottom.set_ylim(-0.3, 3.3)
    bottom.set_yticks([0, 1, 2, 3])
    bottom.set_ylabel("zone score")
    bottom.set_xlabel("study date" if dated else "exam (dates unknown: file order)")
    bottom.legend(ncol=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    if dated:
        fig.autofmt_xdate()
    else:
        bottom.set_xticks(x)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_patient_report(exams: list[dict[str, Any]], output: str | os.PathLike, min_exams: int = 1) -> Path:
    """Write an HTML page with one timeline (global and zone scores) and one table per patient.

    Args:
        exams: from :func:`load_exams`.
        output: the HTML file.
        min_exams: leave out patients with fewer exams (2 shows serial exams only).
    """
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for exam in exams:
        by_patient[exam["patient_id"]].append(exam)
    sections = []
    for patient in sorted(by_patient, key=lambda p: (len(by_patient[p]) < 2, p)):
        series = sorted(by_patient[patient], key=lambda e: (e["date"] or date.min, e["input"]))
        if len(series) < min_exams:
            continue
        rows = "".join(
            f"<tr><td>{e['date'] or ''}</td><td>{html.escape(os.path.basename(e['input']))}</td><td>{e['global_score']}</td>"
            + "".join(f"<td>{s}</td>" for s in e["zones"])
            + "</tr>"
            for e in series
        )
        chart = _timeline_png(series, f"patient {patient}: {len(series)} exam(s)")
        sections.append(
            f'<section class="patient"><h2>Patient {html.escape(patient)}</h2>'
            f'<img alt="timeline of patient {html.escape(patient)}" src="data:image/png;base64,{chart}">'
            f"<table><tr><th>date</th><th>image</th><th>global</th>{''.join(f'<th>{z}</th>' for z in ZONE_NAMES)}</tr>{rows}</table>"
            "</section>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Brixia scores by patient</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:center}</style></head><body>"
        "<h1>Brixia scores by patient</h1><p>Zones A-C: the patient's right lung; D-F: the left lung. "
        "Research use only; not for diagnosis.</p>" + "".join(sections) + "</body></html>\n"
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page)
    return output
