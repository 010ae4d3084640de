"""Results as DICOM for the PACS: lung and zones as a Segmentation, the scores as a Structured Report.

Both reference the scored image (its SOP instance) and are made with highdicom, which follows the
standard's templates: the report is a TID 1500 Measurement Report with one measurement per zone, the
global score and, where the record has them, Cohen et al.'s geographic extent and opacity. No standard
codes exist for these scores, so they use the private coding scheme ``99BSNET`` (private schemes start
with "99").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from monai_bsnet.writers import atomic_path
from monai_bsnet.zones import ZONE_LEVEL, ZONE_LUNG, ZONE_NAMES

__all__ = ["brixia_segmentation", "brixia_report", "lung_segment", "projection_segmentation", "write_dicom_results", "store_dicomweb", "BRIXIA_SCHEME"]

BRIXIA_SCHEME = "99BSNET"
_SCORE_UNIT = CodedConcept("{score}", "UCUM", "score")
_MANUFACTURER = "monai-bsnet"


def _zone_concept(zone: str) -> CodedConcept:
    return CodedConcept(f"BRIXIA-{zone}", BRIXIA_SCHEME, f"Brixia score, zone {zone}")


#: Cohen et al.'s scores of a record (``monai_bsnet.severity``), estimated from the zone probabilities.
_COHEN_CONCEPTS = {
    "geographic_extent": CodedConcept("COHEN-EXTENT", BRIXIA_SCHEME, "Geographic extent (Cohen et al.), 0-8"),
    "opacity": CodedConcept("COHEN-OPACITY", BRIXIA_SCHEME, "Opacity (Cohen et al.), 0-6"),
}


def _pixel_measures(source: pydicom.Dataset) -> hd.PixelMeasuresSequence | None:
    """Pixel measures for a SEG of a projection radiograph (CR, DX, secondary capture).

    highdicom leaves the shared functional groups empty for images without patient coordinates;
    viewers such as OHIF read the pixel spacing from there and fail on an empty sequence. DX and CR
    state ``ImagerPixelSpacing`` (at the detector) where CT/MR state ``PixelSpacing``.
    """
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing], slice_thickness=1.0) if spacing else None


def lung_segment(number: int, label: str, version: str, algorithm_type: hd.seg.SegmentAlgorithmTypeValues) -> hd.seg.SegmentDescription:
    """A segment of lung tissue made by BS-Net (``algorithm_type``: automatic, or semi-automatic once corrected)."""
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Lung,
        algorithm_type=algorithm_type,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="BS-Net", family=codes.cid7162.ArtificialIntelligence, version=version
        ),
    )


def projection_segmentation(
    source: pydicom.Dataset,
    masks: np.ndarray,
    descriptions: list[hd.seg.SegmentDescription],
    version: str,
    series_number: int,
    **options: Any,
) -> hd.seg.Segmentation:
    """A binary DICOM SEG of one projection radiograph (CR, DX, secondary capture).

    Args:
        source: the segmented image.
        masks: (rows, columns, segments) masks, in the order of ``descriptions``.
        descriptions: one per segment.
        version: software version written into the object.
        series_number: SeriesNumber of the new series.
        options: further arguments of :class:`highdicom.seg.Segmentation` (content label, creator...).
    """
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=np.asarray(masks)[None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        manufacturer_model_name="BS-Net",
        software_versions=version,
        device_serial_number="none",
        omit_empty_frames=False,
        pixel_measures=_pixel_measures(source),
        **options,
    )
    # type 2C for images without a patient-space orientation (CR, DX, secondary captures)
    seg.PatientOrientation = source.get("PatientOrientation", ["", ""]) or ["", ""]
    return seg


def brixia_segmentation(source: pydicom.Dataset, lung: np.ndarray, zone_index: np.ndarray, version: str) -> hd.seg.Segmentation:
    """A binary DICOM Segmentation of ``source``: segment 1 the lungs, segments 2-7 zones A-F within them.

    Args:
        source: the scored image.
        lung: (rows, columns) boolean lung mask in the image's geometry.
        zone_index: (rows, columns) zone index 0..5 (A..F), -1 outside the zones.
        version: software version written into the object.
    """
    automatic = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    descriptions = [lung_segment(1, "Lungs", version, automatic)] + [
        lung_segment(z + 2, f"Brixia zone {name} ({ZONE_LUNG[name]} lung, {ZONE_LEVEL[name]})", version, automatic)
        for z, name in enumerate(ZONE_NAMES)
    ]
    masks = [lung] + [(zone_index == z) & lung for z in range(len(ZONE_NAMES))]
    return projection_segmentation(source, np.stack(masks, axis=-1), descriptions, version, series_number=901)


def brixia_report(source: pydicom.Dataset, record: Mapping[str, Any], version: str) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Measurement Report of ``source`` with the six zone scores, the global score and Cohen et
    al.'s extent and opacity where ``record`` has them (null without a mapping fitted for the weights)."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="BS-Net", model_name=f"{_MANUFACTURER} {version}"
        ),
    )
    image = hd.sr.SourceImageForMeasurement.from_source_image(source)
    measurements = [
        hd.sr.Measurement(name=_zone_concept(z), value=record["zones"][z]["score"], unit=_SCORE_UNIT, referenced_images=[image])
        for z in ZONE_NAMES
    ]
    measurements.append(
        hd.sr.Measurement(
            name=CodedConcept("BRIXIA-GLOBAL", BRIXIA_SCHEME, "Brixia score, global"),
            value=record["global_score"],
            unit=_SCORE_UNIT,
            referenced_images=[image],
        )
    )
    measurements += [
        hd.sr.Measurement(name=concept, value=record[key], unit=_SCORE_UNIT, referenced_images=[image])
        for key, concept in _COHEN_CONCEPTS.items() if record.get(key) is not None
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Brixia score"),
        measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CodedConcept("36572-6", "LN", "XR Chest Views"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_number=902,
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        is_complete=True,
        is_final=False,  # a research result awaits a radiologist's verification
    )


def write_dicom_results(
    source_path: str | os.PathLike,
    lung: np.ndarray,
    zone_index: np.ndarray,
    record: Mapping[str, Any],
    output_dir: Path,
    name: str,
    version: str,
) -> dict[str, Path]:
    """Write ``<name>_seg.dcm`` and ``<name>_sr.dcm`` for a DICOM input; both or neither."""
    source = pydicom.dcmread(source_path)
    objects = {
        "dicom_seg": (output_dir / f"{name}_seg.dcm", brixia_segmentation(source, lung, zone_index, version)),
        "dicom_sr": (output_dir / f"{name}_sr.dcm", brixia_report(source, record, version)),
    }
    written: dict[str, Path] = {}
    try:
        for key, (path, dataset) in objects.items():
            with atomic_path(path) as tmp:
                dataset.save_as(tmp)
            written[key] = path
    except BaseException:
        for path in written.values():
            path.unlink(missing_ok=True)
        raise
    return written


def store_dicomweb(url: str, paths: list[Path]) -> list[str]:
    """Store DICOM files into a PACS with DICOMweb STOW-RS (Orthanc: ``http://host:8042/dicom-web``).

    Returns the SOP instance UIDs stored; raises on the first refusal, naming the file.
    """
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url)
    # a busy PACS gets two more tries; a dead one fails within seconds instead of half a minute
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=200)
    stored = []
    for path in paths:
        dataset = pydicom.dcmread(path)
        try:
            client.store_instances([dataset])
        except Exception as e:  # requests' HTTPError and connection errors alike
            raise RuntimeError(f"{path}: the PACS at {url} did not store it ({type(e).__name__}: {e})") from e
        stored.append(str(dataset.SOPInstanceUID))
    return stored
