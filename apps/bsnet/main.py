"""MONAI Label app: BS-Net Brixia COVID-19 severity scoring of chest X-rays, corrected and retrained by radiologists.

Start it with::

    monailabel start_server --app apps/bsnet --studies FOLDER --conf models bsnet
    monailabel start_server --app apps/bsnet --studies http://127.0.0.1:8042/dicom-web --conf models bsnet

Tasks:

- infer ``bsnet`` (2D segmentation): the six Brixia zones over the lungs, each filled with the label of
  its score ("brixia 0" green .. "brixia 3" red), in the image's own geometry; the result JSON holds
  the full record (scores, probabilities, global score, quality flags, zone geometry, uncertainty);
- infer ``lung``: the lung mask;
- infer ``bsnet_explain``: each zone's explanation hot spots, filled with the zone's score label;
- train ``bsnet``: fine-tunes the scoring stage on the corrected labels (a repainted zone map, or label
  info ``{"brixia": "013220"}``), publishes the best model, which inference then serves;
- strategy ``bsnet_entropy``: the unlabelled image with the highest mean zone-score entropy (also
  MONAI Label's ``random`` and ``first``).

Research use only: not a medical device.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import monai_bsnet
from lib.configs.bsnet import BSNetConfig
from lib.datastore import BrixiaDICOMwebDatastore, BrixiaLocalDatastore, parse_extensions
from lib.labels import IMAGE_INFO_KEY, LabelError, image_info_entry, read_target
from monai_bsnet.errors import CXRInputError

logger = logging.getLogger(__name__)

#: The app's task configs, by the name ``--conf models`` selects.
CONFIGS = {"bsnet": BSNetConfig}


class BSNetApp(MONAILabelApp):
    """The BS-Net MONAI Label app (see the module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = conf.get("model_dir") or os.path.join(app_dir, "model")
        os.makedirs(self.model_dir, exist_ok=True)
        names = [m.strip() for m in (conf.get("models") or "bsnet").split(",") if m.strip()]
        names = list(CONFIGS) if "all" in names else names
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown} in --conf models; available: all, {', '.join(CONFIGS)}")
        self.models = {}
        for name in names:
            config = CONFIGS[name]()
            config.init(name, self.model_dir, conf, None, app_dir=app_dir)
            self.models[name] = config
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"BS-Net Brixia scoring (monai-bsnet {monai_bsnet.__version__})",
            description="Brixia COVID-19 severity score of frontal chest X-rays: six lung zones, each scored 0-3. "
            "Repaint a zone with its correct score label and save; train to fine-tune. Research use only.",
            version=monai_bsnet.__version__,
        )

    # ---- datastore ------------------------------------------------------------------------------------
    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        extensions = parse_extensions(self.conf.get("datastore_extensions"))
        logger.info("local datastore %s, files %s", self.studies, extensions)
        return BrixiaLocalDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _init_dicomweb_datastore(self) -> Datastore:
        """A PACS over DICOMweb: CR/DX series (``--conf dicomweb_modalities``), DICOM SEG written with
        highdicom, and so no dcmqi download at start-up (see :class:`BrixiaDICOMwebDatastore`)."""
        from monailabel.datastore.dicom import DICOMwebClientX
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = None
        if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
            session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD)
        client = DICOMwebClientX(
            url=self.studies,
            session=session,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        logger.info("dcmqi not needed: DICOM SEG objects are written with highdicom (nothing downloaded)")
        modalities = (self.conf.get("dicomweb_modalities") or "CR,DX").split(",")
        cache = self.conf.get("dicomweb_cache") or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or None
        return BrixiaDICOMwebDatastore(
            client, modalities, cache_path=cache, ttl=float(self.conf.get("dicomweb_ttl", 30)), version=monai_bsnet.__version__
        )

    def _download_dcmqi_tools(self) -> None:
        """Never download dcmqi: this app writes DICOM SEG with highdicom (MONAI Label's stock DICOMweb
        start-up fetches dcmqi from GitHub, which fails without internet)."""
        logger.info("dcmqi not needed: DICOM SEG objects are written with highdicom")

    # ---- tasks ----------------------------------------------------------------------------------------
    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for config in self.models.values():
            infers.update(config.infer())
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        trainers: dict[str, TrainTask] = {}
        for name, config in self.models.items():
            task = config.trainer()
            if task is not None:
                trainers[name] = task
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {}
        for config in self.models.values():
            strategies.update(config.strategy() or {})
        strategies.update({"random": Random(), "first": First()})
        return strategies

    # ---- requests -------------------------------------------------------------------------------------
    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, with unreadable images answered 422 (with the reason) instead of a bare
        500, and the zone geometry and uncertainty of a datastore image remembered in its info."""
        image = request.get("image")
        try:
            result = super().infer(request, datastore)
        except CXRInputError as e:
            raise HTTPException(status_code=422, detail=f"{image}: cannot score this image: {e.reason}") from e
        except FileNotFoundError as e:
            raise HTTPException(status_code=404, detail=f"{image}: no such image") from e
        self._remember(request, result, datastore or self.datastore())
        return result

    def _remember(self, request: dict[str, Any], result: dict[str, Any], datastore: Datastore) -> None:
        image_id = request.get("image")
        record = result.get("params") or {}
        if not isinstance(image_id, str) or os.path.exists(image_id) or "zone_geometry" not in record:
            return
        try:
            if not datastore.get_image_info(image_id):
                return
            key = self.models[next(iter(self.models))].model.key()
            datastore.update_image_info(image_id, {IMAGE_INFO_KEY: image_info_entry(record, key)})
        except Exception:  # remembering is a convenience: never fail the inference for it
            logger.exception("could not store the BS-Net result of %s in the datastore", image_id)

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """Read the six scores back from a saved final label and keep them in its info (``brixia``), so
        that the radiologist sees at once what the trainer will learn, and a bad label shows now."""
        datastore = self.datastore()
        label = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
        if not label:
            return {}
        model = self.models[next(iter(self.models))].model
        try:
            target = read_target(datastore, image_id, model)
        except LabelError as e:
            logger.warning("label of %s gives no Brixia scores: %s", image_id, e)
            datastore.update_label_info(label, DefaultLabelTag.FINAL, {"brixia_error": str(e)})
            return {"brixia_error": str(e)}
        info = datastore.get_label_info(label, DefaultLabelTag.FINAL)
        if info.get("brixia") != target["brixia"] or info.get("brixia_error"):
            update = {"brixia": target["brixia"], "brixia_source": target["source"], "brixia_error": None}
            if "zone_label_pixels" in target:
                update["zone_label_pixels"] = target["zone_label_pixels"]
            datastore.update_label_info(label, DefaultLabelTag.FINAL, update)
        logger.info("label of %s: Brixia %s (%s)", image_id, target["brixia"], target["source"])
        return {"brixia": target["brixia"], "brixia_source": target["source"]}
