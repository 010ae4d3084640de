"""Datastores of the app: MONAI Label's local folder and DICOMweb, with uploads checked before they are stored.

A corrupt upload must not take the place of a good file: an image that BS-Net cannot read, or a
final label that gives no Brixia scores, is refused with HTTP 422 and the reason, and nothing is
written (MONAI Label's own datastore would store it and overwrite the previous label).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.utils.others.generic import md5_digest
from pydicom.dataset import Dataset

from lib.labels import LabelError, scores_from_info
from monai_bsnet.dicom_labels import brixia_label_segmentation, label_map_from_segmentation, referenced_series
from monai_bsnet.errors import CXRInputError
from monai_bsnet.label_maps import read_label_map, write_label_map
from monai_bsnet.transforms import LoadCXR

logger = logging.getLogger(__name__)

#: File patterns of the local datastore by default: the images LoadCXR reads, in both cases
#: (PACS exports often write .DCM). Labels saved by viewers (.nii.gz from 3D Slicer) match them too.
DEFAULT_EXTENSIONS = ("*.png", "*.jpg", "*.jpeg", "*.dcm", "*.nii.gz", "*.nii")


def parse_extensions(value: str | None) -> list[str]:
    """``--conf datastore_extensions "*.png,*.dcm"`` -> patterns, each also in upper case."""
    patterns = [p.strip() for p in (value.split(",") if value else DEFAULT_EXTENSIONS) if p.strip()]
    patterns = [p if p.startswith("*") else f"*{p if p.startswith('.') else '.' + p}" for p in patterns]
    out: list[str] = []
    for p in patterns + [p.upper() for p in patterns]:
        if p not in out:
            out.append(p)
    return out


def check_image(path: str) -> None:
    """Refuse (HTTP 422) an image BS-Net cannot score."""
    try:
        LoadCXR()(path)
    except CXRInputError as e:
        raise HTTPException(status_code=422, detail=f"image refused: {e.reason}") from e
    except Exception as e:  # any other failure to read is a refusal too, never a stored broken file
        raise HTTPException(status_code=422, detail=f"image refused: {type(e).__name__}: {e}") from e


def check_label(label_filename: str, label_tag: str, label_info: dict[str, Any]) -> None:
    """Refuse (HTTP 422) a final label that can give no scores: an unreadable label map without valid
    ``brixia`` label info. With valid ``brixia`` info the file is not used, so any file is accepted."""
    if label_tag != DefaultLabelTag.FINAL:
        return
    try:
        if scores_from_info(label_info or {}) is not None:
            return
    except LabelError as e:
        raise HTTPException(status_code=422, detail=f"label refused: {e}") from e
    try:
        read_label_map(label_filename)
    except ValueError as e:
        raise HTTPException(status_code=422, detail=f"label refused: {e}") from e


class BrixiaLocalDatastore(LocalDatastore):
    """MONAI Label's local folder datastore, refusing corrupt images and labels."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        check_image(image_filename)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_label(label_filename, label_tag, label_info)
        return super().save_label(image_id, label_filename, label_tag, label_info)


# ---- DICOMweb (a PACS such as Orthanc) -------------------------------------------------------------------
class BrixiaDICOMwebDatastore(DICOMWebDatastore):
    """MONAI Label's DICOMweb datastore made fit for chest X-rays and for working offline.

    Differences from the stock one, and why:

    - images are the CR/DX series (``modalities``): QIDO-RS has no portable "one of" match for
      Modality, so each modality is searched on its own and the results merged; the list is cached
      ``ttl`` seconds (the stock cache keeps it two hours, hiding new studies and new labels);
    - an image is handed to BS-Net as its DICOM file, not converted to NIfTI (the conversion drops the
      MONOCHROME1 inversion, the VOI LUT/window and the DICOM tags the quality checks use);
    - a final label is stored into the PACS as a DICOM SEG written with highdicom (segments
      ``brixia 0`` .. ``brixia 3``); the stock datastore calls dcmqi's ``itkimage2segimage``, which
      it downloads from the internet at start-up. A label is kept in the local cache even when the
      PACS refuses the SEG (the reason goes into the label info, ``dicom_seg_error``): no correction
      is lost;
    - SEGs found in the PACS with Brixia segments (stored by this server, or exported from OHIF)
      become labels of the images they reference, where the cache has none; local labels are never
      deleted because the PACS lacks them (the stock datastore deletes them).
    """

    def __init__(
        self,
        client: Any,
        modalities: Sequence[str] = ("CR", "DX"),
        cache_path: str | None = None,
        ttl: float = 30.0,
        version: str = "",
    ) -> None:
        self._client = client
        self._modalities = [m.strip().upper() for m in modalities if m.strip()]
        self._search_filter = {"Modality": "\\".join(self._modalities)}  # informative only (status, logs)
        self._fetch_by_frame = False
        self._convert_to_nifti = False
        self._ttl = ttl
        self._version = version
        self._listed: tuple[float, list[str]] = (0.0, [])
        self._segs_checked: tuple[float, set[str]] = (0.0, set())
        self._lock = threading.RLock()
        root = cache_path or os.path.join(Path.home(), ".cache", "monailabel", "dicom")
        path = os.path.join(root, md5_digest(self._client.base_url))
        logger.info("DICOMweb datastore %s, modalities %s, cache %s", self._client.base_url, self._modalities, path)
        LocalDatastore.__init__(self, datastore_path=path, extensions=("*.dcm", "*.nii.gz", "*.png"), auto_reload=True)

    # -- images
    def list_images(self) -> list[str]:
        with self._lock:
            stamp, series = self._listed
            if time.monotonic() - stamp < self._ttl:
                return list(series)
            found: list[str] = []
            for modality in self._modalities:
                for item in self._client.search_for_series(search_filters={"Modality": modality}):
                    uid = str(Dataset.from_json(item)["SeriesInstanceUID"].value)
                    if uid not in found:
                        found.append(uid)
            self._listed = (time.monotonic(), found)
            return list(found)

    def get_image_uri(self, image_id: str) -> str:
        uri = LocalDatastore.get_image_uri(self, image_id)
        if uri and os.path.exists(uri):
            return uri
        with self._lock:
            series_dir = os.path.realpath(os.path.join(self._datastore.image_path(), image_id))
            if not os.path.isdir(series_dir) or not os.listdir(series_dir):
                dicom_web_download_series(None, image_id, series_dir, self._client, False)
            files = sorted(os.path.join(series_dir, f) for f in os.listdir(series_dir))
            # a chest X-ray series holds one image; take the lowest InstanceNumber as `bsnet predict` does
            first = min(files, key=lambda f: (int(pydicom.dcmread(f, stop_before_pixels=True).get("InstanceNumber", 0) or 0), f))
            LocalDatastore.add_image(self, image_id, first, self._dicom_info(image_id))
        return LocalDatastore.get_image_uri(self, image_id)

    # -- labels
    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        return LocalDatastore.get_label_uri(self, label_id, label_tag)

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        self._import_pacs_labels()
        listed = set(self.list_images())
        return [i for i in LocalDatastore.get_labeled_images(self) if i in listed]

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        labelled = set(self.get_labeled_images())
        return [i for i in self.list_images() if i not in labelled]

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        self._import_pacs_labels()
        return LocalDatastore.datalist(self, full_path)

    def status(self) -> dict[str, Any]:
        try:
            return {"total": len(self.list_images()), "completed": len(self.get_labeled_images()), "label_tags": {}}
        except Exception as e:  # the PACS is down: /info must still answer
            logger.warning("DICOMweb status: %s", e)
            return {"total": 0, "completed": 0, "label_tags": {}, "error": str(e)}

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_label(label_filename, label_tag, label_info)
        label_info = dict(label_info or {})
        if label_tag == DefaultLabelTag.FINAL:
            label_info.update(self._store_seg(image_id, label_filename, label_info))
        with self._lock:
            self._segs_checked = (0.0, self._segs_checked[1])
        return LocalDatastore.save_label(self, image_id, label_filename, label_tag, label_info)

    def _store_seg(self, image_id: str, label_filename: str, label_info: dict[str, Any]) -> dict[str, Any]:
        """Store the label into the PACS as a DICOM SEG; returns what to add to the label info."""
        from lib.labels import read_target, remap_label_values

        try:
            if scores_from_info(label_info) is not None and not _is_label_map(label_filename):
                return {}  # scores given as label info with a placeholder file: no zone map to store
            source_path = self.get_image_uri(image_id)
            source = pydicom.dcmread(source_path)
            labels = remap_label_values(read_label_map(label_filename), label_info.get("label_info"))
            added: dict[str, Any] = {}
            try:  # the scores, for the SEG's description (zones as the radiologist saw them)
                target = read_target(self, image_id, None, label_filename, label_info)
                added = {"brixia": target["brixia"], "brixia_source": target["source"]}
            except LabelError as e:
                logger.info("label of %s: no scores for the SEG description (%s)", image_id, e)
            seg = brixia_label_segmentation(
                source, labels, self._version, added.get("brixia"), creator=label_info.get("user") or None
            )
            self._client.store_instances([seg])
            logger.info("stored the label of %s into the PACS as DICOM SEG series %s", image_id, seg.SeriesInstanceUID)
            return {**added, "dicom_seg_series": str(seg.SeriesInstanceUID), "dicom_seg_error": None}
        except Exception as e:  # the PACS or the conversion failed: keep the label, say why
            logger.exception("the label of %s was not stored into the PACS", image_id)
            return {"dicom_seg_error": f"{type(e).__name__}: {e}"}

    def _import_pacs_labels(self) -> None:
        """Labels from SEGs in the PACS (Brixia segments) for listed images without a local label."""
        with self._lock:
            stamp, checked = self._segs_checked
            if time.monotonic() - stamp < self._ttl:
                return
            try:
                segs = self._client.search_for_series(search_filters={"Modality": "SEG"})
            except Exception as e:
                logger.warning("cannot search the PACS for SEGs: %s", e)
                return
            listed = set(self.list_images())
            known = {str(v.labels[DefaultLabelTag.FINAL].info.get("dicom_seg_series", ""))
                     for v in self._datastore.objects.values() if v.labels.get(DefaultLabelTag.FINAL)}
            for item in segs:
                meta = Dataset.from_json(item)
                seg_uid, study_uid = str(meta["SeriesInstanceUID"].value), str(meta["StudyInstanceUID"].value)
                if seg_uid in checked or seg_uid in known:
                    continue
                checked.add(seg_uid)
                try:
                    self._import_seg(study_uid, seg_uid, listed)
                except Exception as e:  # one unreadable SEG must not hide the others
                    logger.warning("SEG series %s not imported: %s", seg_uid, e)
            self._segs_checked = (time.monotonic(), checked)

    def _import_seg(self, study_uid: str, seg_uid: str, listed: set[str]) -> None:
        for seg in self._client.retrieve_series(study_uid, seg_uid):
            image_id = referenced_series(seg)
            if image_id not in listed or LocalDatastore.get_label_by_image_id(self, image_id, DefaultLabelTag.FINAL):
                continue
            labels = label_map_from_segmentation(seg)
            self.get_image_uri(image_id)  # the image too: training reads it from the cache
            with tempfile.TemporaryDirectory() as tmp:
                path = write_label_map(labels, os.path.join(tmp, f"{image_id}.nii.gz"), reference=self.get_image_uri(image_id))
                info = {"dicom_seg_series": seg_uid, "source": "PACS", "SeriesDescription": str(seg.get("SeriesDescription", ""))}
                LocalDatastore.save_label(self, image_id, str(path), DefaultLabelTag.FINAL, info)
            logger.info("label of %s imported from the PACS (SEG series %s)", image_id, seg_uid)


def _is_label_map(path: str) -> bool:
    try:
        read_label_map(path)
        return True
    except ValueError:
        return False
