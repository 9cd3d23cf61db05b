"""Recognition models: every model with every modality subset, registry, checkpoints."""

import itertools

import pytest
import torch

from mmer.models import (
    MODALITIES,
    CheckpointError,
    InputConfig,
    create_model,
    list_models,
    load_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)
INP = InputConfig(n_classes=3, image_size=32, n_frames=3, n_rois=4, roi_size=8, physio_length=32)
SUBSETS = [s for r in range(len(MODALITIES) + 1) for s in itertools.combinations(MODALITIES, r)]


def make_batch(b: int, present: tuple[str, ...]) -> dict:
    g = torch.Generator().manual_seed(0)
    s = INP.image_size
    batch = {
        "frames": torch.randn(b, INP.n_frames, s, s, generator=g),
        "flow": torch.randn(b, 3, s, s, generator=g),
        "roi": torch.randn(b, INP.n_rois, 3, INP.roi_size, INP.roi_size, generator=g),
        "depth": torch.randn(b, 2, s, s, generator=g),
        "physio": torch.randn(b, INP.physio_channels, INP.physio_length, generator=g),
        "physio_feats": torch.randn(b, INP.n_physio_feats, generator=g),
    }
    batch["mask"] = torch.tensor([[float(m in present) for m in MODALITIES]] * b)
    return batch


def test_registry_lists_every_architecture():
    assert {"hsta", "hsta_tiny", "ststnet", "dfrnet", "physionet", "late_fusion", "flowcnn"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet9000")


@pytest.mark.parametrize("name", ["hsta_tiny", "ststnet", "dfrnet", "physionet", "late_fusion", "flowcnn"])
def test_forward_with_every_modality_subset(name):
    model = create_model(name, **INP.as_dict()).eval()
    for subset in SUBSETS:
        out = model(make_batch(2, subset))
        assert out.shape == (2, 3), (name, subset)
        assert torch.isfinite(out).all(), (name, subset)
        if not set(subset) & set(model.uses):
            # nothing the model reads: it falls back to its learned prior, identical for every row
            assert torch.equal(out[0], out[1])


def test_hsta_output_depends_only_on_present_modalities():
    model = create_model("hsta_tiny", **INP.as_dict()).eval()
    a = make_batch(2, ("video", "physio"))
    b = {k: v.clone() for k, v in a.items()}
    b["depth"] = torch.randn_like(b["depth"]) * 10  # masked modality: any content
    assert torch.allclose(model(a), model(b), atol=1e-5)
    b["physio_feats"] = b["physio_feats"] + 5  # present modality: must matter
    assert not torch.allclose(model(a), model(b), atol=1e-5)


def test_mixed_masks_in_one_batch():
    model = create_model("hsta_tiny", **INP.as_dict()).eval()
    batch = make_batch(3, MODALITIES)
    batch["mask"] = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    out = model(batch)
    assert torch.isfinite(out).all() and out.shape == (3, 3)


def test_checkpoint_round_trip(tmp_path):
    model = create_model("hsta_tiny", **INP.as_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.eval()
    path = save_checkpoint(tmp_path / "m.pt", model, class_names=["negative", "positive", "surprise"],
                           labels="3class", modalities=["video", "physio"], features={"image_size": 32})
    loaded, meta = load_checkpoint(path, model="hsta_tiny", modalities=["video"])
    batch = make_batch(2, ("video", "physio"))
    assert torch.allclose(model(batch), loaded(batch))
    assert meta["class_names"] == ["negative", "positive", "surprise"]
    assert meta["config"]["name"] == "hsta_tiny" and meta["modalities"] == ["video", "physio"]


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    model = create_model("ststnet", **INP.as_dict())
    path = save_checkpoint(tmp_path / "s.pt", model, class_names=["a", "b", "c"], labels="3class", modalities=["video"])
    with pytest.raises(CheckpointError, match="holds model 'ststnet', not 'hsta'"):
        load_checkpoint(path, model="hsta")
    with pytest.raises(CheckpointError, match="cannot use \\['physio'\\]"):
        load_checkpoint(path, modalities=["video", "physio"])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an mmer recognition checkpoint"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def _damaged(tmp_path, name: str, **change):
    model = create_model("ststnet", **INP.as_dict())
    path = save_checkpoint(tmp_path / f"{name}.pt", model, class_names=["a", "b", "c"], labels="3class",
                           modalities=["video"])
    ckpt = torch.load(path, weights_only=True)
    for key, value in change.items():
        if value is None:
            del ckpt[key]
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"class_names": None}, r"lacks \['class_names'\]"),
    ({"state_dict": None, "modalities": None}, r"lacks \['state_dict', 'modalities'\]"),
    ({"modalities": "video"}, "modalities is a str, expected a list"),
    ({"class_names": ["a", "b"]}, r"3 outputs but class_names names 2"),
    ({"class_names": ["a", "a", "b"]}, "distinct"),
    ({"modalities": ["video", "smell"]}, r"unknown modalities \['smell'\]"),
    ({"config": {"image_size": 32}}, "config has no model name"),
])
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_damaged(tmp_path, "bad", **change))


def test_modalities_given_as_a_string_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="expected a non-empty list of names"):
        load_checkpoint(_damaged(tmp_path, "ok"), modalities="video")


def test_flip_negates_u_and_mirrors_the_image():
    from mmer.models.flowcnn import flip_flow

    x = torch.arange(2 * 6 * 4 * 5, dtype=torch.float32).reshape(2, 6, 4, 5)
    out = flip_flow(x, [0, 3])
    assert torch.equal(out[:, 0], -x[:, 0].flip(-1))
    assert torch.equal(out[:, 3], -x[:, 3].flip(-1))
    for c in (1, 2, 4, 5):  # v and strain are only mirrored
        assert torch.equal(out[:, c], x[:, c].flip(-1))
    assert torch.equal(flip_flow(out, [0, 3]), x)


def test_flowcnn_scale_free_inputs_and_training_flip():
    model = create_model("flowcnn", **INP.as_dict())
    batch = make_batch(3, ("video",))
    batch["flow_offset"] = torch.randn_like(batch["flow"])
    scaled = {**batch, "flow": batch["flow"] * 7 + 3}
    # min-max scaling inside the model: any affine rescaling of a stored image gives the same input
    assert torch.allclose(model.inputs(batch), model.inputs(scaled), atol=1e-5)
    x = model.inputs(batch)
    assert model.u_channels == [0, 3]
    assert torch.allclose(x[:, [0, 1, 3, 4]].flatten(2).median(-1).values, torch.zeros(3, 4), atol=1e-6)
