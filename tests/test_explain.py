"""Explanation maps: super-pixel occlusion and Grad-CAM relevance, rendering, files, predictor switch."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from PIL import Image

import monai_bsnet.explain as explain_module
from monai_bsnet.explain import Explanation, explain, gradcam_relevance, occlusion_relevance, render_explanation
from monai_bsnet.inference import BrixiaPredictor, zone_index_map
from monai_bsnet.networks import BSNet
from monai_bsnet.zones import median_scores

REPO = Path(__file__).resolve().parents[1]

SIDE = 256
# the stand-in's lungs and the two zone areas it reads, (row slice, column slice) of a 256 x 256 frame
RIGHT_LUNG = (slice(40, 220), slice(20, 110))  # image left = the patient's right lung (zones A-C)
LEFT_LUNG = (slice(40, 220), slice(146, 236))  # image right = the patient's left lung (zones D-F)
ZONE_A_AREA = (slice(40, 100), slice(20, 110))  # upper third of the right lung
ZONE_F_AREA = (slice(160, 220), slice(146, 236))  # lower third of the left lung
BLOB = (70, 65)  # a bright spot (radius 12) inside zone A's area


class RegionNet(nn.Module):
    """A deterministic stand-in with BS-Net's ``outputs()``: zone A's score-3 logit grows with the mean
    brightness of zone A's area, zone F's with that of zone F's area; all other logits are constant;
    fixed lungs, identity alignment. So the truth is known: only pixels in A's area matter to zone A."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(40.0))  # a parameter, so that the device can be found
        lung = torch.zeros(SIDE, SIDE, dtype=torch.bool)
        lung[RIGHT_LUNG] = lung[LEFT_LUNG] = True
        self.register_buffer("lung", lung)

    def outputs(self, x: torch.Tensor) -> SimpleNamespace:
        b = x.shape[0]
        logits = torch.zeros(b, 6, 4)
        # centred on the plain lung's brightness (0.25), so that the probabilities are not saturated
        logits[:, 0, 3] = self.gain * (x[:, 0][:, ZONE_A_AREA[0], ZONE_A_AREA[1]].mean((-2, -1)) - 0.25)
        logits[:, 5, 3] = self.gain * (x[:, 0][:, ZONE_F_AREA[0], ZONE_F_AREA[1]].mean((-2, -1)) - 0.25)
        lung_logits = torch.where(self.lung, 10.0, -10.0).expand(b, 1, SIDE, SIDE)
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(b, 2, 3)
        return SimpleNamespace(zone_logits=logits, lung_logits=lung_logits, theta=theta, aligned_lung=torch.sigmoid(lung_logits))


@pytest.fixture(scope="module")
def textured_image() -> torch.Tensor:
    """(1, 256, 256): dark lungs on a brighter background, mild noise, and a bright blob in zone A."""
    rng = np.random.default_rng(0)
    image = np.full((SIDE, SIDE), 0.6) + rng.normal(0, 0.01, (SIDE, SIDE))
    image[RIGHT_LUNG] -= 0.35
    image[LEFT_LUNG] -= 0.35
    rows, cols = np.mgrid[:SIDE, :SIDE]
    image[(rows - BLOB[0]) ** 2 + (cols - BLOB[1]) ** 2 <= 12**2] = 0.95  # a focal opacity
    return torch.from_numpy(image.clip(0, 1)).float()[None]


@pytest.mark.parametrize("fill", ["blur", "mean"])
def test_occluding_zone_a_lung_changes_zone_a_relevance_not_zone_f(textured_image, fill):
    net = RegionNet()
    e = occlusion_relevance(net, textured_image, n_segments=24, batch_size=5, fill=fill)
    segments, relevance = e.segments, e.relevance
    assert e.method == "occlusion" and relevance.shape == (6, 4, SIDE, SIDE)
    assert segments.max() >= 10  # the lungs were cut into super-pixels
    # super-pixels stay inside the (dilated) lungs: nothing between them
    assert segments[128, 128] == 0 and not e.region[128, 128]

    blob = segments[BLOB]
    assert blob > 0
    # occluding the blob's super-pixel takes brightness out of zone A: p(A = 3) drops
    assert relevance[0, 3][BLOB] > 0.01
    assert torch.all(relevance[0, 3][segments == blob] == relevance[0, 3][BLOB])  # one value per super-pixel
    # ... and leaves zone F (the far, lower zone of the other lung) untouched
    assert torch.all(relevance[5][:, segments == blob].abs() < 1e-6)
    # a super-pixel wholly outside zone A's area does not count for zone A
    in_a = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    in_a[ZONE_A_AREA] = True
    for label in segments.unique().tolist():
        if label and not (in_a & (segments == label)).any():
            assert torch.all(relevance[0][:, segments == label].abs() < 1e-6), label
    # where zone F reads, occlusion counts for F and not for A
    f_label = segments[190, 190]
    assert f_label > 0 and torch.all(relevance[0][:, segments == f_label].abs() < 1e-6)


def test_maps_come_back_in_the_input_size(textured_image):
    e = occlusion_relevance(RegionNet(), textured_image, n_segments=24, batch_size=8)
    relevance, region = e.to_original((300, 260))  # rows, columns of the original image
    assert relevance.shape == (6, 4, 300, 260) and relevance.dtype == np.float32
    assert region.shape == (300, 260) and region.dtype == bool
    # the blob's relevance lands where the blob lies in the original geometry
    row, col = round((BLOB[0] + 0.5) * 300 / SIDE - 0.5), round((BLOB[1] + 0.5) * 260 / SIDE - 0.5)
    assert relevance[0, 3, row, col] == pytest.approx(float(e.relevance[0, 3][BLOB]), rel=0.05)


def test_gradcam_gives_finite_maps_of_the_input_size_and_leaves_the_network_alone():
    torch.manual_seed(0)
    net = BSNet().eval()
    flags = [p.requires_grad for p in net.parameters()]
    image = torch.rand(1, 128, 128)  # small: 24 forward and backward passes
    e = gradcam_relevance(net, image)
    assert e.method == "gradcam" and e.relevance.shape == (6, 4, 128, 128)
    assert torch.isfinite(e.relevance).all() and (e.relevance >= 0).all()
    assert e.relevance.abs().sum() > 0
    # each zone's map stays in that zone's own area
    zones = zone_index_map(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), (128, 128))  # untrained alignment: identity
    for z in range(6):
        assert torch.all(e.relevance[z][:, zones != z] == 0)
    relevance, _ = e.to_original((300, 260))
    assert relevance.shape == (6, 4, 300, 260) and np.isfinite(relevance).all()
    # hooks and gradient flags went on a copy
    assert [p.requires_grad for p in net.parameters()] == flags and all(p.grad is None for p in net.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())


def test_explain_rejects_an_unknown_method(textured_image):
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain(RegionNet(), textured_image, "lime")
    with pytest.raises(ValueError, match="explain must be"):
        BrixiaPredictor(RegionNet(), explain="lime")


def test_rendering_has_five_panels_coloured_where_relevant(textured_image):
    e = occlusion_relevance(RegionNet(), textured_image, n_segments=24)
    relevance, region = e.to_original((SIDE, SIDE))
    zones = zone_index_map(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), (SIDE, SIDE)).numpy()
    picture = render_explanation(textured_image[0].numpy(), relevance, region, zones, e.probabilities, "occlusion", "test")
    width, height = picture.size
    gap, header = 6, 22  # render_explanation's layout for a 256 px panel
    assert width == 5 * SIDE + 4 * gap and height > SIDE + header
    rgb = np.asarray(picture).astype(int)

    def pixel(panel: int, row: int, col: int) -> np.ndarray:
        return rgb[header + row, panel * (SIDE + gap) + col]

    below_label = (BLOB[0] + 6, BLOB[1])  # inside the blob, under the zone letter drawn at A's centre
    red = pixel(4, *below_label)  # panel 4: score 3, whose probability the blob raises
    assert red[0] - red[1] > 60 and red[0] - red[2] > 60
    white = pixel(1, *below_label)  # panel 1: score 0, to which the blob does not contribute
    assert abs(white[0] - white[1]) < 10 and abs(white[1] - white[2]) < 10
    outside = pixel(4, 128, 128)  # between the lungs: the plain radiograph
    assert outside[0] == outside[1] == outside[2]
    # panel 0 shows each zone in its predicted score's panel: the medians, or the scores it is given (a record's)
    median = int(median_scores(e.probabilities)[0])
    assert (pixel(0, *below_label) == pixel(1 + median, *below_label)).all()
    other = 0 if median else 3
    named = np.asarray(render_explanation(textured_image[0].numpy(), relevance, region, zones, e.probabilities, "occlusion", "test",
                                          scores=[other] * 6)).astype(int)
    assert (named[header + below_label[0], below_label[1]] == pixel(1 + other, *below_label)).all()
    assert not (named[header + below_label[0], below_label[1]] == pixel(0, *below_label)).all()


@pytest.fixture(scope="module")
def small_png(tmp_path_factory, sample_images) -> Path:
    folder = tmp_path_factory.mktemp("explain_in")
    Image.open(sample_images[0]).convert("L").resize((260, 300)).save(folder / "chest.png")
    return folder / "chest.png"


def test_predictor_writes_the_explanation_png_and_nifti(small_png, tmp_path, monkeypatch):
    # few super-pixels: the test checks the plumbing, each one costs a network pass
    monkeypatch.setattr(explain_module, "occlusion_relevance", functools.partial(occlusion_relevance, n_segments=4))
    torch.manual_seed(0)
    (record,) = BrixiaPredictor(BSNet(), explain="occlusion").run([small_png], tmp_path, progress=False)
    assert record["status"] == "ok", record
    info = record["explanation"]
    assert info["method"] == "occlusion" and Path(info["png"]).is_file() and Path(info["nifti"]).is_file()
    assert Path(info["png"]).name == "chest_explain.png" and Path(info["nifti"]).name == "chest_explain.nii.gz"
    assert record["outputs"]["explanation_png"] == info["png"]
    assert json.loads((tmp_path / "chest.json").read_text())["explanation"]["nifti"] == info["nifti"]
    nifti = nib.load(info["nifti"])
    assert nifti.shape == (260, 300, 1, 24)  # columns, rows, one slice, zone * 4 + score
    data = nifti.get_fdata()
    assert np.isfinite(data).all()
    picture = Image.open(info["png"])
    assert picture.mode == "RGB" and picture.size[1] > 300 // 2


def test_the_explanation_shows_the_scores_of_the_record_with_or_without_mirror_tta(small_png, tmp_path, monkeypatch):
    shown = []
    write = explain_module.write_explanation
    monkeypatch.setattr(explain_module, "write_explanation", lambda *args, **kwargs: shown.append(args[2].probabilities) or write(*args, **kwargs))
    torch.manual_seed(0)
    network = BSNet()
    records = [BrixiaPredictor(network, explain="gradcam", mirror_tta=tta).run([small_png], tmp_path / str(tta), progress=False)[0] for tta in (True, False)]
    for record, probabilities in zip(records, shown):
        np.testing.assert_allclose([zone["probabilities"] for zone in record["zones"].values()], probabilities.numpy(), atol=1e-5)
    assert not torch.allclose(shown[0], shown[1], atol=1e-4)  # the mirror's average, not the plain pass


def test_a_failed_explanation_leaves_no_file_of_the_image(small_png, tmp_path, monkeypatch):
    monkeypatch.setattr(explain_module, "occlusion_relevance", functools.partial(occlusion_relevance, n_segments=2))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(explain_module, "save_relevance_nifti", broken)
    (record,) = BrixiaPredictor(BSNet(), explain="occlusion").run([small_png], tmp_path, progress=False)
    assert record["status"] == "error" and "disk full" in record["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_inference_config_passes_the_explain_switch(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(BSNet().state_dict(), path)
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundle" / "configs" / "inference.json"))
    assert parser["explain"] is None
    parser.update({"bundle_root": str(REPO / "bundle"), "ckpt_path": str(path), "explain": "gradcam"})
    assert parser.get_parsed_content("predictor").explain == "gradcam"


def test_explanation_is_a_plain_api():
    # what a MONAI Label infer task needs: a named tuple it can map back and render itself
    assert set(Explanation._fields) == {"method", "relevance", "region", "probabilities", "segments", "units", "scores"}
    assert explain_module.EXPLAIN_METHODS == ("occlusion", "gradcam")


def test_nifti_keeps_the_values_and_the_image_geometry(tmp_path):
    from monai_bsnet.explain import save_relevance_nifti

    rng = np.random.default_rng(1)
    relevance = rng.uniform(-0.2, 0.6, (6, 4, 30, 20)).astype(np.float32)  # rows 30, columns 20
    reference = tmp_path / "image.nii.gz"
    affine = np.diag([0.5, 0.7, 1.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((20, 30, 1), np.int16), affine), reference)
    saved = nib.load(save_relevance_nifti(relevance, tmp_path / "a.nii.gz", reference=reference))
    assert saved.shape == (20, 30, 1, 24) and np.allclose(saved.affine, affine)
    back = saved.get_fdata()[:, :, 0, :].transpose(2, 1, 0).reshape(6, 4, 30, 20)
    assert np.abs(back - relevance).max() < 1e-4  # int16 with a scale factor: far below any meaningful step
    assert back[2, 1, 7, 3] == pytest.approx(relevance[2, 1, 7, 3], abs=1e-4)  # zone C, score 1, row 7, column 3
    # no NIfTI reference: the pixel spacing (rows, columns) of the metadata, ITK's orientation
    plain = nib.load(save_relevance_nifti(relevance, tmp_path / "b.nii.gz", pixel_spacing=(0.3, 0.2)))
    assert np.allclose(np.diag(plain.affine), [-0.2, -0.3, 1.0, 1.0])
    assert not list(tmp_path.glob("*.partial*"))


def test_bsnet_predict_offers_the_explain_switch(tmp_path, capsys):
    from monai_bsnet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path), "--output", str(tmp_path / "out"), "--explain", "lime"])
    assert exit_info.value.code == 2 and "invalid choice: 'lime'" in capsys.readouterr().err
    # a valid method gets as far as the weights check
    code = None
    try:
        main(["predict", str(tmp_path), "--output", str(tmp_path / "out"), "--explain", "gradcam", "--weights", str(tmp_path / "none.pt")])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "no BS-Net weights" in capsys.readouterr().err
