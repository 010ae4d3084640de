"""Speed and memory of BS-Net scoring, next to torchxrayvision's COVID severity pipeline (Cohen et al.).

Prints a table and writes JSON (default ``benchmarks/results/<device>-<host>.json``):

- end-to-end latency of one image: a 2000 x 2000 DICOM file in (the bundle's ``sample/4d98e1de.dcm``)
  -> results out (CSV, JSON record, lung mask, zone map, overlay): median and p95 over ``--repeats``;
- batch throughput in images/s on ``--batch-images`` files, batches of ``--batch-size``;
- network-only forward time per image at 512 x 512 (batch 1);
- peak resident memory of the process.

The peer, torchxrayvision's DenseNet-121 severity pipeline at 224 px (read, normalise, centre-crop,
resize, DenseNet features, linear heads), gets the same figures on the JPEG version of the same
radiograph (it reads no DICOM). Both run with random weights: the compute is the same as with trained
ones, and nothing is downloaded. Each pipeline runs in its own child process, so that peak memory is
its own; timings are wall-clock on an otherwise idle machine.

    python benchmarks/latency.py [--device cuda] [--repeats 10] [--no-tta]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DICOM = REPO / "bundle" / "sample" / "4d98e1de.dcm"
SAMPLE_JPEG = REPO / "bundle" / "sample" / "19abe1f3.jpg"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "p95_s": percentile(values, 95), "n": len(values)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_bsnet(args: argparse.Namespace) -> dict:
    import pydicom
    import torch

    from monai_bsnet.inference import BrixiaPredictor
    from monai_bsnet.networks import BSNet

    torch.manual_seed(0)
    predictor = BrixiaPredictor(BSNet(), device=args.device, batch_size=args.batch_size, precision=args.precision, mirror_tta=args.tta)
    work = Path(tempfile.mkdtemp(prefix="bsnet-bench-"))
    try:
        predictor.run([SAMPLE_DICOM], work / "warmup", progress=False)
        latencies = []
        for i in range(args.repeats):
            start = time.perf_counter()
            records = predictor.run([SAMPLE_DICOM], work / f"single{i}", progress=False)
            synchronize(args.device)
            latencies.append(time.perf_counter() - start)
            assert records[0]["status"] == "ok", records[0]
        batch_dir = work / "batch"
        batch_dir.mkdir()
        for i in range(args.batch_images):  # distinct series, or they would count as one input
            ds = pydicom.dcmread(SAMPLE_DICOM)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(batch_dir / f"image{i:03d}.dcm")
        start = time.perf_counter()
        predictor.run([batch_dir], work / "batch_out", progress=False)
        synchronize(args.device)
        throughput = args.batch_images / (time.perf_counter() - start)
        x = torch.rand(1, 1, 512, 512)
        forward = []
        for _ in range(args.repeats + 2):  # the predictor's own call: precision, memory format
            start = time.perf_counter()
            predictor.forward(x)
            synchronize(args.device)
            forward.append(time.perf_counter() - start)
        forward = forward[2:]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "pipeline": f"BS-Net (monai-bsnet), 512 px, {args.precision}, {'mirror TTA' if args.tta else 'no TTA'}, 2000x2000 DICOM in, all outputs written",
        "end_to_end": summary(latencies),
        "throughput_images_per_s": throughput,
        "network_forward": summary(forward),
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_peer(args: argparse.Namespace) -> dict:
    import numpy as np
    import skimage.io
    import torch
    import torchvision
    import torchxrayvision as xrv

    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None).to(args.device).eval()
    # Cohen et al.'s severity heads: linear maps of the 1024 pooled features (random here)
    heads = torch.nn.Linear(1024, 2).to(args.device)
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])

    def score(paths: list[Path]) -> np.ndarray:
        images = []
        for path in paths:
            img = skimage.io.imread(path)
            img = xrv.datasets.normalize(img, 255)
            if img.ndim == 3:
                img = img.mean(2)
            images.append(transform(img[None, ...]))
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(images)).float().to(args.device)
            return heads(model.features2(x)).cpu().numpy()

    score([SAMPLE_JPEG])
    latencies = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        score([SAMPLE_JPEG])
        synchronize(args.device)
        latencies.append(time.perf_counter() - start)
    paths = [SAMPLE_JPEG] * args.batch_images
    start = time.perf_counter()
    for i in range(0, len(paths), args.batch_size):
        score(paths[i : i + args.batch_size])
    synchronize(args.device)
    throughput = len(paths) / (time.perf_counter() - start)
    x = torch.rand(1, 1, 224, 224, device=args.device)
    forward = []
    with torch.inference_mode():
        for _ in range(args.repeats + 2):
            start = time.perf_counter()
            heads(model.features2(x))
            synchronize(args.device)
            forward.append(time.perf_counter() - start)
    return {
        "pipeline": "torchxrayvision DenseNet-121 severity (Cohen et al.), 224 px, 2000x2000 JPEG in, scores out",
        "end_to_end": summary(latencies),
        "throughput_images_per_s": throughput,
        "network_forward": summary(forward[2:]),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"], help="BS-Net arithmetic")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                        help="BS-Net's mirror test-time augmentation, on by default as in bsnet predict")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--part", choices=["bsnet", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part:  # child process: one pipeline, JSON on stdout
        print(json.dumps(bench_bsnet(args) if args.part == "bsnet" else bench_peer(args)))
        return

    import torch

    results = {
        "machine": {
            "host": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "torch": torch.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("part", "output")},
    }
    for part in ("bsnet", "peer"):
        command = [sys.executable, __file__, "--part", part, "--device", args.device, "--repeats", str(args.repeats),
                   "--batch-images", str(args.batch_images), "--batch-size", str(args.batch_size), "--precision", args.precision,
                   "--tta" if args.tta else "--no-tta"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[part] = json.loads(out.strip().splitlines()[-1])

    print(f"{'':34}{'BS-Net':>14}{'torchxrayvision':>18}")
    rows = [
        ("end-to-end median (s)", lambda r: r["end_to_end"]["median_s"]),
        ("end-to-end p95 (s)", lambda r: r["end_to_end"]["p95_s"]),
        ("throughput (images/s)", lambda r: r["throughput_images_per_s"]),
        ("network forward median (s)", lambda r: r["network_forward"]["median_s"]),
        ("peak resident memory (MB)", lambda r: r["peak_rss_mb"]),
    ]
    for name, get in rows:
        print(f"{name:34}{get(results['bsnet']):>14.3f}{get(results['peer']):>18.3f}")
    tta = "" if args.tta else "-no-tta"
    output = args.output or REPO / "benchmarks" / "results" / f"{args.device.split(':')[0]}-{args.precision}{tta}-{platform.node()}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {output}")


if __name__ == "__main__":
    main()
