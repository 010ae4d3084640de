"""Wrap a JPEG chest X-ray into a DICOM Secondary Capture without re-encoding it (JPEG Baseline).

Secondary Capture, not DX: the JPEG's detector, pixel spacing and acquisition are unknown, and a DX
object must state them.

Used once to make ``sample/4d98e1de.dcm`` from the CC BY 3.0 sample ``4d98e1de.jpg``:

    python bundle/scripts/jpeg_to_dicom.py SOURCE.jpg bundle/sample/4d98e1de.dcm --patient-id 229 --view PA
"""

from __future__ import annotations

import argparse

from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--patient-id", default="ANONYMOUS")
    parser.add_argument("--view", default="PA")
    parser.add_argument("--attribution", default="CC BY 3.0, ml-workgroup COVID-19 image repository (Cohen et al. collection)")
    args = parser.parse_args()

    with Image.open(args.source) as image:
        if image.format != "JPEG" or image.mode != "L":
            raise SystemExit(f"{args.source}: expected an 8-bit grey JPEG, got {image.format} {image.mode}")
        width, height = image.size
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SECONDARY_CAPTURE, generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = FileDataset(args.output, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.BodyPartExamined = args.patient_id, "Sample^Radiograph", "DX", "CHEST"
    # type 2 attributes of the patient, study and series modules: present, possibly empty
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", "", ""
    ds.Manufacturer = ""
    ds.PatientOrientation = ["L", "F"]  # a PA view: rows run to the patient's left, columns to the feet
    ds.ViewPosition, ds.SeriesNumber, ds.InstanceNumber = args.view, 1, 1
    ds.ImageType, ds.ConversionType = ["DERIVED", "SECONDARY"], "WSD"
    ds.BurnedInAnnotation = "YES"  # the radiograph carries burned-in side markers
    ds.DerivationDescription = f"JPEG {args.source.rsplit('/', 1)[-1]} wrapped without re-encoding"
    ds.ImageComments = args.attribution
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    with open(args.source, "rb") as f:
        jpeg = f.read()
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.LossyImageCompressionRatio = f"{width * height / len(jpeg):.2f}"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(args.output, write_like_original=False)


if __name__ == "__main__":
    main()
