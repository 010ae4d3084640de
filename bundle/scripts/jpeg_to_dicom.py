"""Wrap a JPEG chest X-ray into a DX DICOM file without re-encoding it (JPEG Baseline transfer syntax).

Used once to make ``sample/4d98e1de.dcm`` from the CC BY 3.0 sample ``4d98e1de.jpg``:

    python bundle/scripts/jpeg_to_dicom.py SOURCE.jpg bundle/sample/4d98e1de.dcm --patient-id 229 --view PA
"""

from __future__ import annotations

import argparse

from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


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
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DX_FOR_PRESENTATION, generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = FileDataset(args.output, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.BodyPartExamined = args.patient_id, "Sample^Radiograph", "DX", "CHEST"
    ds.ViewPosition, ds.SeriesNumber, ds.InstanceNumber = args.view, 1, 1
    ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"JPEG {args.source.rsplit('/', 1)[-1]} wrapped without re-encoding"
    ds.ImageComments = args.attribution
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    with open(args.source, "rb") as f:
        ds.PixelData = encapsulate([f.read()])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(args.output, write_like_original=False)


if __name__ == "__main__":
    main()
