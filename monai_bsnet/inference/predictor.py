"""Scoring a batch of chest X-ray files end to end: load, preprocess, BS-Net, post-process, write.

The bundle's ``inference.json`` and the ``bsnet predict`` command both run :class:`BrixiaPredictor`.
A file that cannot be scored becomes an error row (``status`` error, the reason in ``error``) and the
batch goes on; an image either gets all of its output files or none.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from monai_bsnet import __version__
from monai_bsnet.errors import CXRInputError
from monai_bsnet.severity import CohenSeverityMapping
from monai_bsnet.inference.inputs import CXRInput, find_inputs
from monai_bsnet.inference.zone_map import zone_index_map, zone_label_map
from monai_bsnet.transforms import LoadCXR, clean_lung_probability, cxr_preprocessing, mirror_average, to_original_geometry
from monai_bsnet.writers import render_overlay, write_image_outputs, write_results_csv
from monai_bsnet.zone_context import ZoneContextRating, served_ratings, serving
from monai_bsnet.zones import ZONE_LEVEL, ZONE_LUNG, ZONE_NAMES

__all__ = ["BrixiaPredictor", "QUALITY_FLAGS"]

logger = logging.getLogger(__name__)

#: Quality flags a record may carry, with what they mean.
QUALITY_FLAGS = {
    "lungs_not_found": "the lung segmentation covers under 5% of the image: the scores are unreliable",
    "low_resolution": "the image is under 256 pixels on a side (a figure cropped from a paper?)",
    "not_frontal_view": "the DICOM ViewPosition is neither PA nor AP",
    "series_has_several_images": "the DICOM series holds more than one image; the first one was scored",
}


class _FileDataset(Dataset):
    """Loads and preprocesses each input; a bad file becomes an error item instead of an exception."""

    def __init__(self, inputs: Sequence[CXRInput], load: Callable, preprocess: Callable) -> None:
        self.inputs, self.load, self.preprocess = inputs, load, preprocess

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = time.perf_counter()
        item = self.inputs[index]
        try:
            image = self.load(item.path)
            net_input = self.preprocess(image)
        except CXRInputError as e:
            return {"index": index, "error": e.reason}
        except Exception as e:  # an unforeseen failure on one file must not stop the batch
            return {"index": index, "error": f"{type(e).__name__}: {e}"}
        return {
            "index": index,
            "image": image.as_tensor()[0].numpy(),
            "meta": dict(image.meta),
            # a plain tensor: MetaTensor's per-operation bookkeeping would slow every layer down
            "net_input": net_input.as_tensor().float() if hasattr(net_input, "as_tensor") else torch.as_tensor(net_input).float(),
            "load_seconds": time.perf_counter() - start,
        }


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items  # images differ in size: batching happens on the network inputs only


class BrixiaPredictor:
    """Score chest X-ray files with BS-Net and write the results.

    Args:
        network: a :class:`~monai_bsnet.networks.BSNet` (or ``BSNetZoneProbabilities``) with its
            weights loaded.
        device: where the network runs.
        batch_size: images loaded together, and per network call on a GPU. On a CPU the network takes
            one image at a time: batching buys no speed there and multiplies the activation memory.
        num_workers: data-loading processes (0: load in the main process).
        lung_threshold: probability above which a pixel is lung.
        model_name: written into every record.
        model_version: written into every record and onto the overlays.
        dicom_outputs: for DICOM inputs, also write the lung and zones as a DICOM Segmentation and the
            scores as a DICOM Structured Report (``<name>_seg.dcm``, ``<name>_sr.dcm``) for the PACS.
        precision: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` to run the network under autocast
            (bfloat16: network 0.58 s instead of 0.68 s on the 2-core AVX-512 development machine;
            a zone whose cumulative score probability is almost exactly one half may flip).
        explain: also write an explanation map of each image's zone scores, ``"occlusion"`` (super-pixel
            occlusion, one network pass per super-pixel: ~50 s per image on a 2-core CPU) or
            ``"gradcam"`` (Grad-CAM, ~15 s), as ``<name>_explain.png`` and ``<name>_explain.nii.gz``
            (see :mod:`monai_bsnet.explain`); None (default): no explanation.
        cohen_mapping: estimates Cohen et al.'s geographic extent (0-8) and opacity (0-6) from the
            zone probabilities (:class:`~monai_bsnet.severity.CohenSeverityMapping`; the bundle ships
            ``models/cohen_severity.json``). Without it both fields are null.
        mirror_tta: test-time augmentation (default on): also score the left-right mirror of each image
            and average the zone probabilities with the mirror's, its zones swapped back (A-C <-> D-F).
            Twice the network time; the lung mask and zone map stay those of the image itself. In the
            cross-validation of the shipped weights' recipe it lowered the zone MAE on every set of
            augmentation draws tried (model card, "Mirror test-time augmentation"); False scores the
            image alone.
        zone_context: the second rating stage that reads the six zones together
            (:class:`~monai_bsnet.zone_context.ZoneContextRating`; the bundle ships
            ``models/zone_context.json``): the zone scores are then its ratings, which add up to the
            same global score as the zone medians. Without it each zone's score is its median.
    """

    def __init__(
        self,
        network: nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        num_workers: int = 0,
        lung_threshold: float = 0.5,
        model_name: str = "BS-Net (monai-bsnet)",
        model_version: str = __version__,
        precision: str = "float32",
        dicom_outputs: bool = False,
        explain: str | None = None,
        cohen_mapping: CohenSeverityMapping | None = None,
        mirror_tta: bool = True,
        zone_context: ZoneContextRating | None = None,
    ) -> None:
        if precision not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"precision must be float32, bfloat16 or float16, got {precision!r}")
        self.device = torch.device(device)
        # channels-last lets oneDNN/cuDNN pick faster convolution kernels (same results, ~15% faster)
        self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.lung_threshold = lung_threshold
        self.model_name, self.model_version, self.precision = model_name, model_version, precision
        self.dicom_outputs = dicom_outputs
        if explain is not None and explain not in ("occlusion", "gradcam"):
            raise ValueError(f"explain must be None, 'occlusion' or 'gradcam', got {explain!r}")
        self.explain = explain
        self.cohen_mapping = cohen_mapping
        self.mirror_tta = mirror_tta
        self.zone_context = zone_context
        self.load, self.preprocess = LoadCXR(), cxr_preprocessing()

    # ---- one batch through the network --------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, net_inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zone probabilities (B, 6, 4), lung probabilities (B, 1, h, w) and theta (B, 2, 3)."""
        autocast = self.precision != "float32"
        images = net_inputs.to(self.device, memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=getattr(torch, self.precision), enabled=autocast):
            out = self.network.outputs(images)
            mirrored = self.network.outputs(images.flip(-1)).zone_logits if self.mirror_tta else None
        probabilities = torch.softmax(out.zone_logits.float(), dim=-1)
        if mirrored is not None:
            probabilities = mirror_average(probabilities, torch.softmax(mirrored.float(), dim=-1))
        return {
            "zone_probabilities": probabilities.cpu(),
            "lung": torch.sigmoid(out.lung_logits.float()).cpu(),
            "theta": out.theta.float().cpu(),
        }

    # ---- results ---------------------------------------------------------------------------------------
    def zone_scores(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The six zone scores of one image's zone probabilities (6, 4): the zone context stage's
        ratings where there is one, else each zone's median."""
        return torch.as_tensor(served_ratings(probabilities.numpy(), self.zone_context)[0])

    def make_record(self, item: CXRInput, meta: dict[str, Any], probabilities: torch.Tensor, flags: list[str]) -> dict[str, Any]:
        """The result record of one image (see DESIGN.md): zones, global score, metadata, flags."""
        scores = self.zone_scores(probabilities).tolist()
        expected = (probabilities * torch.arange(4.0)).sum(-1).tolist()
        zones = {
            name: {
                "lung": ZONE_LUNG[name],
                "level": ZONE_LEVEL[name],
                "score": int(scores[z]),
                "probabilities": [round(float(p), 6) for p in probabilities[z]],
                "expected_score": round(float(expected[z]), 4),
            }
            for z, name in enumerate(ZONE_NAMES)
        }
        cohen = self.cohen_mapping.predict(probabilities.numpy()) if self.cohen_mapping is not None else {}
        keep = ("format", "modality", "view_position", "patient_id", "study_date", "study_instance_uid",
                "series_instance_uid", "sop_instance_uid", "pixel_spacing", "photometric_interpretation")
        return {
            "input": str(item.path),
            "status": "ok",
            "model": {"name": self.model_name, "version": self.model_version, **serving(self.mirror_tta, self.zone_context)},
            "zones": zones,
            "global_score": int(sum(scores)),
            "global_expected": round(float(sum(expected)), 4),
            # Cohen et al.'s scores, estimated from the zone probabilities (null without a mapping)
            "geographic_extent": round(float(cohen["geographic_extent"][0]), 2) if cohen else None,
            "opacity": round(float(cohen["opacity"][0]), 2) if cohen else None,
            "image": {"height": meta["spatial_shape"][0], "width": meta["spatial_shape"][1], **{k: meta.get(k) for k in keep}},
            "series_files": [str(p) for p in item.series_files],
            "quality_flags": flags,
            "disclaimer": "Research use only; not for diagnosis.",
        }

    def postprocess(
        self, item: CXRInput, meta: dict[str, Any], out: dict[str, torch.Tensor]
    ) -> tuple[dict[str, Any], np.ndarray, torch.Tensor, np.ndarray]:
        """One image's network outputs (of :meth:`forward`, batch axis removed) -> its record with the
        quality flags, the lung mask (rows, columns) bool, the zone index map (-1 outside the zones)
        and the zone label map (score + 1 inside the lungs), all in the image's own geometry. The lung
        mask keeps the two largest lung regions, holes filled (:func:`~monai_bsnet.transforms.clean_lung_probability`)."""
        size = meta["spatial_shape"]
        lung_fraction = float((out["lung"] > self.lung_threshold).float().mean())
        record = self.make_record(item, meta, out["zone_probabilities"], self._flags(item, meta, lung_fraction))
        # two lungs without holes or stray islands, mapped back with sub-pixel boundaries
        lung_map = clean_lung_probability(out["lung"], self.lung_threshold)
        lung = (to_original_geometry(lung_map, size)[0] > self.lung_threshold).numpy()
        zone_index = zone_index_map(out["theta"], size)
        scores = [record["zones"][z]["score"] for z in ZONE_NAMES]
        labels = zone_label_map(zone_index, scores, torch.from_numpy(lung)).numpy()
        return record, lung, zone_index, labels

    def _flags(self, item: CXRInput, meta: dict[str, Any], lung_fraction: float) -> list[str]:
        flags = []
        if lung_fraction < 0.05:
            flags.append("lungs_not_found")
        if min(meta["spatial_shape"]) < 256:
            flags.append("low_resolution")
        view = str(meta.get("view_position", "")).upper()
        if meta.get("format") == "dicom" and view and view not in ("PA", "AP"):
            flags.append("not_frontal_view")
        if len(item.series_files) > 1:
            flags.append("series_has_several_images")
        return flags

    def _finish(
        self, item: CXRInput, loaded: dict[str, Any], out: dict[str, torch.Tensor], output_dir: Path, network_seconds: float
    ) -> dict[str, Any]:
        start = time.perf_counter()
        meta = loaded["meta"]
        record, lung, zone_index, labels = self.postprocess(item, meta, out)
        scores = [record["zones"][z]["score"] for z in ZONE_NAMES]
        overlay = render_overlay(loaded["image"], lung, zone_index.numpy(), labels, scores, f"BS-Net {self.model_version}")
        # timing goes into the record before it is written (writing itself is not counted)
        record["timing_seconds"] = {
            "load_and_preprocess": round(loaded["load_seconds"], 4),
            "network": round(network_seconds, 4),
            "postprocess": round(time.perf_counter() - start, 4),
        }
        nifti = item.path if meta.get("format") == "nifti" else None
        dicom: dict[str, Path] = {}
        if self.dicom_outputs and meta.get("format") == "dicom":
            from monai_bsnet.dicom_writers import write_dicom_results

            dicom = write_dicom_results(item.path, lung, zone_index.numpy(), record, output_dir, item.name, self.model_version)
        explained = self._explanation_files(item, loaded, out, zone_index, record, output_dir, written_before=dicom)
        write_image_outputs(output_dir, item.name, record, lung, labels, overlay, nifti_reference=nifti, written_before={**dicom, **explained})
        return record

    def _explanation_files(
        self,
        item: CXRInput,
        loaded: dict[str, Any],
        out: dict[str, torch.Tensor],
        zone_index: torch.Tensor,
        record: dict[str, Any],
        output_dir: Path,
        written_before: dict[str, Path],
    ) -> dict[str, Path]:
        """With ``explain`` set: compute and write the image's explanation map, and add
        ``record["explanation"]``. Returns the written paths (none without ``explain``). If this fails,
        the files in ``written_before`` are removed too, so that the image still gets all or nothing."""
        if self.explain is None:
            return {}
        from monai_bsnet.explain import explain, write_explanation

        start = time.perf_counter()
        try:
            explanation = explain(self.network, loaded["net_input"], self.explain, lung=out["lung"])
            # the relevance is the image's own; the scores its picture shows are the record's (with mirror TTA, the average's)
            explanation = explanation._replace(probabilities=out["zone_probabilities"], scores=[record["zones"][z]["score"] for z in ZONE_NAMES])
            nifti = item.path if loaded["meta"].get("format") == "nifti" else None
            paths = write_explanation(output_dir, item.name, explanation, loaded["image"], zone_index.numpy(),
                                      self.model_version, loaded["meta"], nifti_reference=nifti)
        except BaseException:
            for path in written_before.values():
                path.unlink(missing_ok=True)
            raise
        record["explanation"] = {
            "method": self.explain,
            "png": str(paths["explanation_png"]),
            "nifti": str(paths["explanation_nifti"]),
            "units": explanation.units,
            "layout": "NIfTI (columns, rows, 1, 24): volume zone * 4 + score, zones A..F, scores 0..3",
            "seconds": round(time.perf_counter() - start, 3),
        }
        return paths

    def run(self, inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike, progress: bool = True) -> list[dict[str, Any]]:
        """Score every image under ``inputs`` (files or folders) and write to ``output_dir``.

        Writes ``results.csv`` (one row per input, ``status`` ok or error), and per scored image
        ``<name>.json``, ``<name>_lung.png``, ``<name>_zones.png`` and ``<name>_overlay.png`` (NIfTI
        masks for NIfTI inputs). Returns the records, errors included.
        """
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        items = find_inputs(inputs, exclude=output_dir)
        records: list[dict[str, Any]] = [{} for _ in items]
        loader = DataLoader(
            _FileDataset(items, self.load, self.preprocess),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate,
        )
        batches: Iterable = loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc="BS-Net", unit="batch", total=len(loader))
        for batch in batches:
            good = [b for b in batch if "error" not in b]
            for b in batch:
                if "error" in b:
                    records[b["index"]] = self._error(items[b["index"]], b["error"])
            if not good:
                continue
            start = time.perf_counter()
            net_inputs = torch.stack([b["net_input"] for b in good])
            chunks = net_inputs.split(1 if self.device.type == "cpu" else len(good))
            parts = [self.forward(chunk) for chunk in chunks]
            out = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
            network_share = (time.perf_counter() - start) / len(good)
            for k, b in enumerate(good):
                item = items[b["index"]]
                try:
                    records[b["index"]] = self._finish(item, b, {key: value[k] for key, value in out.items()}, output_dir, network_share)
                except Exception as e:  # a failure while writing one image's outputs
                    logger.exception("could not write the outputs of %s", item.path)
                    records[b["index"]] = self._error(item, f"writing outputs failed: {type(e).__name__}: {e}")
        write_results_csv(records, output_dir / "results.csv")
        failed = sum(r["status"] != "ok" for r in records)
        logger.info("scored %d of %d inputs, %d errors, results in %s", len(records) - failed, len(records), failed, output_dir)
        return records

    @staticmethod
    def _error(item: CXRInput, reason: str) -> dict[str, Any]:
        logger.warning("%s: %s", item.path, reason)
        return {"input": str(item.path), "status": "error", "error": reason}
