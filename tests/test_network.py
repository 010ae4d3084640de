"""BSNet: shapes, alignment at initialisation, zone order, staged freezing, TorchScript."""

from __future__ import annotations

import pytest
import torch

from monai_bsnet.networks import STAGES, BSNet, BSNetZoneProbabilities, pool_zones, warp, zone_boxes
from monai_bsnet.zones import ZONE_LUNG, ZONE_NAMES


@pytest.fixture(scope="module")
def net() -> BSNet:
    torch.manual_seed(0)
    return BSNet().eval()


@pytest.mark.parametrize("height, width, batch", [(512, 512, 1), (256, 320, 2)])
def test_output_shapes(net: BSNet, height: int, width: int, batch: int):
    with torch.no_grad():
        out = net(torch.rand(batch, 1, height, width))
    assert out.zone_logits.shape == (batch, 6, 4)
    assert out.lung_logits.shape == (batch, 1, height, width)
    assert out.theta.shape == (batch, 2, 3)
    assert out.aligned_lung.shape == (batch, 1, height, width)
    assert torch.isfinite(out.zone_logits).all()


def test_size_not_multiple_of_32_is_refused(net: BSNet):
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 1, 500, 512))


def test_theta_is_identity_at_initialisation(net: BSNet):
    image = torch.rand(2, 1, 256, 256)
    with torch.no_grad():
        out = net(image)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    assert torch.allclose(out.theta, identity)
    # the aligned image (and the aligned lung map) equal their inputs: exactly in float64, and up to
    # float32 rounding of the sampling grid (~1e-5) in float32
    assert torch.allclose(warp(image.double(), out.theta.double()), image.double(), atol=1e-10)
    assert torch.allclose(warp(image, out.theta), image, atol=1e-4)
    assert torch.allclose(out.aligned_lung, torch.sigmoid(out.lung_logits), atol=1e-4)


def test_warp_follows_theta():
    # a shift of theta's x translation by +0.5 (a quarter of the normalised width) moves content left
    image = torch.zeros(1, 1, 64, 64)
    image[..., 30:34, 40:44] = 1.0
    theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
    moved = warp(image, theta)
    ys, xs = torch.nonzero(moved[0, 0] > 0.5, as_tuple=True)
    assert xs.float().mean().item() == pytest.approx(41.5 - 16, abs=1)
    assert ys.float().mean().item() == pytest.approx(31.5, abs=1)


def test_zone_boxes_follow_the_brixia_convention():
    boxes = zone_boxes()  # (x1, y1, x2, y2) fractions, zones A..F
    for name, (x1, y1, x2, y2) in zip(ZONE_NAMES, boxes.tolist()):
        # the patient's right lung is the left half of a frontal image
        assert (x2 <= 0.5) if ZONE_LUNG[name] == "right" else (x1 >= 0.5), name
    tops = boxes[:, 1].tolist()
    assert tops[0] < tops[1] < tops[2] and tops[3] < tops[4] < tops[5]  # upper, middle, lower


def test_blob_in_patients_right_upper_zone_is_seen_by_zone_a_only():
    # identity-aligned image: a bright blob in the upper part of the image's LEFT half, which is the
    # patient's RIGHT upper zone (Brixia zone A)
    image = torch.zeros(1, 1, 512, 512)
    image[..., 60:140, 80:180] = 1.0
    crops = pool_zones(warp(image, torch.eye(2, 3)[None]), zone_boxes())
    seen = crops.flatten(1).mean(1)
    assert seen.shape == (6,)
    assert seen[0] > 0.05
    assert torch.all(seen[1:] == 0), dict(zip(ZONE_NAMES, seen.tolist()))


@pytest.mark.parametrize("stage", STAGES)
def test_freezing_a_stage_keeps_its_weights(stage: str):
    net = BSNet().freeze(stage)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    image = torch.rand(2, 1, 128, 128)
    out = net(image)
    loss = out.zone_logits.square().mean() + out.lung_logits.mean() + out.theta.square().sum()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    after = net.state_dict()
    prefix = f"{stage}."
    frozen = [k for k in before if k.startswith(prefix)]
    others = [k for k in before if not k.startswith(prefix) and before[k].is_floating_point()]
    assert frozen
    for k in frozen:  # weights and batch-norm statistics stay as they were
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in others)
    assert stage in net.frozen and not net.stage(stage).training and net.training


def test_unfreeze_makes_a_stage_trainable_again():
    net = BSNet().freeze(["encoder", "segmentation"]).freeze("encoder", frozen=False)
    assert all(p.requires_grad for p in net.encoder.parameters())
    assert not any(p.requires_grad for p in net.segmentation.parameters())
    with pytest.raises(ValueError, match="unknown BS-Net stage"):
        net.freeze("decoder")


def test_parameter_counts_add_up(net: BSNet):
    counts = net.parameter_counts()
    assert sum(counts[s] for s in STAGES) == counts["total"]
    assert 10_000_000 < counts["encoder"] < 12_000_000  # ResNet-18 without its classifier


def test_zone_probabilities_network_and_torchscript(net: BSNet):
    wrapper = BSNetZoneProbabilities().eval()
    wrapper.load_state_dict(net.state_dict())  # same keys: the same checkpoints load into both
    image = torch.rand(2, 1, 256, 256)
    with torch.no_grad():
        probabilities = wrapper(image)
        scripted = torch.jit.script(wrapper)
        assert torch.allclose(scripted(image), probabilities, atol=1e-6)
        assert torch.allclose(scripted(image[:1]), probabilities[:1], atol=1e-5)  # other batch size
    assert probabilities.shape == (2, 6, 4)
    with torch.no_grad():
        assert torch.allclose(probabilities, torch.softmax(net(image).zone_logits, -1), atol=1e-6)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 6))


def test_a_shared_zone_classifier_learns_for_every_zone_and_loads_into_the_default_head():
    torch.manual_seed(0)
    shared = BSNet(shared_zone_classifier=True).freeze(["encoder", "segmentation", "alignment"])
    head, default_head = shared.scoring, BSNet().scoring
    assert all(classifier is head.classifiers[0] for classifier in head.classifiers)
    one_classifier = sum(p.numel() for p in default_head.classifiers[0].parameters())
    assert sum(p.numel() for p in default_head.parameters()) - sum(p.numel() for p in head.parameters()) == 5 * one_classifier
    # a step on zone A's logits alone moves the classifier of every zone
    image = torch.rand(2, 1, 128, 128)
    state = {k: v.clone() for k, v in shared.state_dict().items()}
    shared.train()
    shared(image).zone_logits[:, 0].logsumexp(-1).sum().backward()
    torch.optim.SGD(head.parameters(), lr=0.1).step()
    after = shared.state_dict()
    for zone in range(6):
        key = f"scoring.classifiers.{zone}.blocks.0.conv.weight"
        assert not torch.equal(after[key], state[key])
        assert torch.equal(after[key], after["scoring.classifiers.0.blocks.0.conv.weight"])
    # the six equal copies load into the per-zone head, which then scores the same, TorchScript included
    default = BSNetZoneProbabilities().eval()
    default.load_state_dict(after)
    shared.eval()
    with torch.no_grad():
        expected = torch.softmax(shared(image).zone_logits, -1)
        assert torch.allclose(default(image), expected, atol=1e-5)
        shared_probabilities = BSNetZoneProbabilities(shared_zone_classifier=True).eval()
        shared_probabilities.load_state_dict(after)
        scripted = torch.jit.script(shared_probabilities)
        assert torch.allclose(scripted(image), expected, atol=1e-5)


def test_a_shared_zone_classifier_normalises_over_the_six_zones_at_once():
    torch.manual_seed(0)
    head = BSNet(shared_zone_classifier=True).scoring.train()
    crops = [torch.rand(2 * 6, c, s, s) for c, s in zip((64, 128, 256, 512), (16, 8, 4, 2))]  # 2 images x 6 zones
    head.classify(crops)
    first = head.classifiers[0].blocks[0]
    with torch.no_grad():
        batch_mean = first.conv(head.pyramid(crops)).mean(dim=(0, 2, 3))
    # one batch-norm update with the statistics of all zones (six updates, one per zone, would differ)
    assert torch.allclose(first.adn.N.running_mean, 0.1 * batch_mean, atol=1e-6)


def test_stage_views_share_one_network():
    from monai_bsnet.networks import LungSegmenter, MaskAligner, ZoneScorer

    bsnet = BSNet().eval()
    image = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        out = bsnet(image)
        assert torch.equal(LungSegmenter(bsnet)(image), out.lung_logits)
        assert torch.equal(ZoneScorer(bsnet)(image), out.zone_logits)
        mask = (torch.rand(1, 1, 128, 128) > 0.5).float()
        assert torch.allclose(MaskAligner(bsnet)(mask), mask, atol=1e-4)  # identity at initialisation
    assert set(LungSegmenter(bsnet).state_dict()) == {f"bsnet.{k}" for k in bsnet.state_dict()}


def test_weights_load_from_every_checkpoint_form(tmp_path):
    from monai_bsnet.networks import LungSegmenter, load_weights

    source = BSNet()
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in source.state_dict().items()}
    forms = {
        "plain.pt": source.state_dict(),
        "half.pt": half,  # the shipped file is stored in half precision to stay small
        "saver.pt": {"model": LungSegmenter(source).state_dict(), "optimizer": {}},  # CheckpointSaver
        "ddp.pt": {f"module.{k}": v for k, v in source.state_dict().items()},
    }
    for name, state in forms.items():
        torch.save(state, tmp_path / name)
        target = load_weights(BSNet(), tmp_path / name)
        for key, value in source.state_dict().items():
            loaded = target.state_dict()[key]
            assert loaded.dtype == value.dtype, (name, key)
            assert torch.allclose(loaded.float(), value.float(), atol=1e-2 if name == "half.pt" else 0), (name, key)
    with pytest.raises(FileNotFoundError, match="no BS-Net weights"):
        load_weights(BSNet(), tmp_path / "missing.pt")
