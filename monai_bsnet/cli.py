"""The ``bsnet`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_bsnet import __version__

DISCLAIMER = "Research use only: not a medical device, not for diagnosis."


def architecture_table(image_size: int = 512, zone_classifier: str = "bsnet") -> str:
    """The BS-Net stages with their parameter counts and output shapes for one image, as text, with the
    given form of the zone classifier (``pooled_linear``: the shipped weights' form)."""
    import torch

    from monai_bsnet.networks import STAGES, BSNet

    net = BSNet(zone_classifier=zone_classifier).eval()
    counts = net.parameter_counts()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, image_size, image_size))
    shapes = {
        "encoder": "5 feature maps, strides 2..32, 64-512 channels",
        "segmentation": f"lung_logits {tuple(out.lung_logits.shape)}",
        "alignment": f"theta {tuple(out.theta.shape)}, aligned_lung {tuple(out.aligned_lung.shape)}",
        "scoring": f"zone_logits {tuple(out.zone_logits.shape)} (zones A..F x scores 0..3)",
    }
    lines = [f"BS-Net ({zone_classifier} zone classifier), input (1, 1, {image_size}, {image_size})", f"{'stage':<14}{'parameters':>12}  output"]
    lines += [f"{name:<14}{counts[name]:>12,}  {shapes[name]}" for name in STAGES]
    lines.append(f"{'total':<14}{counts['total']:>12,}")
    return "\n".join(lines)


#: The bundle next to the package (a source checkout or an editable install).
BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundle"


def default_weights() -> Path:
    """``$BSNET_WEIGHTS`` if set, else the bundle's ``models/model.pt``."""
    return Path(os.environ.get("BSNET_WEIGHTS", BUNDLE_DIR / "models" / "model.pt"))


def predict(args: argparse.Namespace) -> int:
    import torch

    from monai_bsnet.inference import BrixiaPredictor
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.severity import mapping_beside
    from monai_bsnet.zone_context import rating_beside

    network = load_weights(BSNet(), args.weights)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = BrixiaPredictor(
        network,
        device=device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        precision=args.precision,
        dicom_outputs=args.dicom_outputs,
        explain=args.explain,
        cohen_mapping=mapping_beside(args.weights, network),
        mirror_tta=args.tta,
        zone_context=rating_beside(args.weights, network),
    )
    records = predictor.run(args.inputs, args.output, progress=not args.quiet)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"scored {len(records) - len(failed)} of {len(records)} inputs; results in {Path(args.output) / 'results.csv'}")
    for record in failed:
        print(f"error: {record['input']}: {record['error']}", file=sys.stderr)
    return 0 if records and not failed else (1 if records else 2)


STAGE_CONFIGS = {
    "segmentation": ["train.json", "train_segmentation.json"],
    "alignment": ["train.json", "train_alignment.json"],
    "scoring": ["train.json"],
}


def run_bundle(config_files: list[str], extra: list[str]) -> int:
    """``python -m monai.bundle run`` on the bundle's configs; ``extra`` are its ``--key value`` overrides."""
    import subprocess

    configs = [str(BUNDLE_DIR / "configs" / name) for name in config_files]
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs), "--bundle_root", str(BUNDLE_DIR), *extra]
    return subprocess.call(command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bsnet", description=f"BS-Net Brixia scoring of chest X-rays. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"monai-bsnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    arch = commands.add_parser("architecture", help="print the network's stages with parameter counts")
    arch.add_argument("--image-size", type=int, default=512, help="input side in pixels (multiple of 32)")
    arch.add_argument("--zone-classifier", default="bsnet",
                      help="bsnet: the authors' scoring head (BSNet()'s default); pooled_linear: the shipped weights' form")
    pred = commands.add_parser("predict", help="score chest X-ray files or folders (DICOM, PNG, JPEG, NIfTI)")
    pred.add_argument("inputs", nargs="+", help="files and folders (searched recursively)")
    pred.add_argument("--output", "-o", required=True, help="output folder (results.csv, JSON records, masks, overlays)")
    pred.add_argument("--weights", type=Path, default=None, help="checkpoint (default: $BSNET_WEIGHTS or the bundle's model.pt)")
    pred.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    pred.add_argument("--batch-size", type=int, default=4)
    pred.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    pred.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32",
                      help="network arithmetic (bfloat16: faster on recent CPUs and GPUs)")
    pred.add_argument("--dicom-outputs", action="store_true",
                      help="for DICOM inputs, also write DICOM SEG (lungs, zones) and SR (scores) for the PACS")
    pred.add_argument("--explain", choices=["occlusion", "gradcam"], default=None,
                      help="also write an explanation map per image (<name>_explain.png/.nii.gz): super-pixel "
                      "occlusion (~50 s per image on a 2-core CPU) or Grad-CAM (~15 s, coarser)")
    pred.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                      help="mirror test-time augmentation (default): average the zone probabilities with the mirrored "
                      "image's; --no-tta scores the image alone, in half the network time")
    pred.add_argument("--quiet", action="store_true", help="no progress bar")
    rep = commands.add_parser("report", help="HTML timelines of the scores per patient, from a `bsnet predict` output")
    rep.add_argument("results", help="the output folder of `bsnet predict` (or its results.csv)")
    rep.add_argument("--by-patient", action="store_true", default=True, help="one timeline per patient (the only mode)")
    rep.add_argument("--output", "-o", default=None, help="HTML file (default: RESULTS/report.html)")
    rep.add_argument("--metadata", default=None, help="CSV giving patient and date of non-DICOM inputs, by file name")
    rep.add_argument("--file-column", default="filename")
    rep.add_argument("--patient-column", default="patient_id")
    rep.add_argument("--date-column", default="date")
    rep.add_argument("--serial-only", action="store_true", help="only patients with two exams or more")
    sto = commands.add_parser("store", help="store the DICOM SEG/SR results of `bsnet predict --dicom-outputs` into a PACS")
    sto.add_argument("results", help="the output folder of `bsnet predict --dicom-outputs`")
    sto.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    trn = commands.add_parser(
        "train", help="train one stage with the bundle's configs (other --key value options go to the bundle)"
    )
    trn.add_argument("--stage", choices=sorted(STAGE_CONFIGS), required=True)
    commands.add_parser("evaluate", help="evaluate a checkpoint with the bundle's evaluate.json (--key value options go to the bundle)")
    prep = commands.add_parser(
        "prepare-data", help="build the training folders brixia-public/ and lungseg/ from local copies of the public sources"
    )
    prep.add_argument("--brixia-repo", required=True, help="copy of BrixIA/Brixia-score-COVID-19 (data/public-annotations.csv)")
    prep.add_argument("--covid-repo", required=True, help="copy of ieee8023/covid-chestxray-dataset (metadata.csv, images/)")
    prep.add_argument("--v7-zip", default=None,
                      help="semantic_masks_v7labs_lungs.zip (default: the one inside the installed torchxrayvision)")
    prep.add_argument("--output", "-o", required=True, help="folder that receives brixia-public/ and lungseg/")
    prep.add_argument("--overwrite", action="store_true", help="replace existing folders (once the new ones are complete)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "evaluate"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "architecture":
        if args.image_size % 32 or args.image_size < 64:
            arch.error("--image-size must be a multiple of 32, at least 64")
        from monai_bsnet.networks.scoring import ZONE_CLASSIFIERS  # here, not at the top: keeps torch out of `bsnet --help`

        if args.zone_classifier not in ZONE_CLASSIFIERS:
            arch.error(f"--zone-classifier must be one of {', '.join(ZONE_CLASSIFIERS)}, got {args.zone_classifier!r}")
        print(architecture_table(args.image_size, args.zone_classifier))
    elif args.command == "predict":
        if args.weights is None:
            args.weights = default_weights()
        if not Path(args.weights).is_file():
            parser.exit(2, f"bsnet: error: no BS-Net weights at {args.weights} (use --weights or set BSNET_WEIGHTS)\n")
        return predict(args)
    elif args.command == "report":
        from monai_bsnet.serial_report import load_exams, write_patient_report

        exams = load_exams(args.results, args.metadata, args.file_column, args.patient_column, args.date_column)
        results = Path(args.results)
        output = args.output or (results.parent if results.is_file() else results) / "report.html"
        path = write_patient_report(exams, output, min_exams=2 if args.serial_only else 1)
        print(f"{len({e['patient_id'] for e in exams})} patients, {len(exams)} exams: {path}")
    elif args.command == "store":
        from monai_bsnet.dicom_writers import store_dicomweb

        files = sorted(Path(args.results).glob("*_seg.dcm")) + sorted(Path(args.results).glob("*_sr.dcm"))
        if not files:
            parser.exit(2, f"bsnet: error: no *_seg.dcm or *_sr.dcm in {args.results} (run predict with --dicom-outputs)\n")
        try:
            stored = store_dicomweb(args.url, files)
        except RuntimeError as e:
            parser.exit(1, f"bsnet: error: {e}\n")
        print(f"stored {len(stored)} DICOM objects into {args.url}")
    elif args.command == "train":
        return run_bundle(STAGE_CONFIGS[args.stage], extra)
    elif args.command == "evaluate":
        return run_bundle(["train.json", "evaluate.json"], extra)
    elif args.command == "prepare-data":
        from monai_bsnet.data.prepare import prepare_training_data
        from monai_bsnet.errors import CXRInputError

        try:
            done = prepare_training_data(args.brixia_repo, args.covid_repo, args.v7_zip, args.output, overwrite=args.overwrite)
        except CXRInputError as e:
            parser.exit(2, f"bsnet: error: {e}\n")
        for name, folder in done.items():
            print(f"{name}: {folder.count} images in {folder.path} ({', '.join(f'{k} {v}' for k, v in folder.counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
