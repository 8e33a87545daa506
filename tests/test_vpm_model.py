"""VPM-Net: registry, variant configs, forward shapes, ablation switches, training modes and weights loading."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError, WeightsError
from reid.losses import CrossEntropyLabelSmooth, ImageTextContrastiveLoss, MINPLoss
from reid.models import CONFIG_DIR, create_model, list_models, load_model_config, save_checkpoint

H, W = 256, 128


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(8, 3, H, W, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_loads(path):
    config = load_model_config(path)
    assert config.name == path.stem
    assert config.name in list_models()
    assert config.input_size == (H, W)


def test_config_unknown_key_and_wrong_type(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclip_model: ViT-B-16\nnum_promts: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*num_promts.*did you mean 'num_prompts'"):
        load_model_config(bad)
    bad.write_text("name: x\nnum_prompts: four\n")
    with pytest.raises(ConfigError, match="num_prompts: expected int, got str"):
        load_model_config(bad)
    bad.write_text("name: x\nmode: half\n")
    with pytest.raises(ConfigError, match="mode"):
        load_model_config(bad)


def test_unknown_model_lists_close_matches():
    with pytest.raises(KeyError, match="vpm_vit_b16"):
        create_model("vpm_vit_b61")
    with pytest.raises(ConfigError, match="num_prompts"):
        create_model("vpm_tiny", num_promts=2)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_encodes(name):
    model = create_model(name, pretrained=None).eval()
    with torch.no_grad():
        emb = model.encode(torch.randn(1, 3, *model.input_size))
    assert emb.shape == (1, model.embed_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)
    assert model.input_size == (H, W) and len(model.mean) == 3 and len(model.std) == 3


def test_tiny_forward_shapes(images):
    model = create_model("vpm_tiny")
    d, e = model.image_encoder.width, model.text_dim
    feats = model.forward_features(images)
    assert feats["cls"].shape == (8, d) and feats["proj"].shape == (8, e)
    assert feats["tokens"].shape == (8, (H // 16) * (W // 16), d)  # prompts are not returned as tokens
    out = model(images)
    assert out["logits"].shape == (8, model.num_classes)
    assert out["feat"].shape == (8, model.embed_dim) and model.embed_dim == d + e
    assert torch.allclose(out["feat"], torch.cat([feats["cls"], feats["proj"]], dim=1), atol=1e-5)
    assert model.forward_head(feats, pre_logits=True).shape == (8, model.embed_dim)
    model.eval()
    with torch.no_grad():
        emb = model.encode(images)
        proj = model.encode_image_proj(images)
    assert torch.allclose(emb, torch.nn.functional.normalize(out["feat"], dim=1), atol=1e-4)
    assert torch.allclose(proj.norm(dim=1), torch.ones(8), atol=1e-5)


def test_overlapping_patch_stride(images):
    model = create_model("vpm_tiny", patch_stride=12)
    assert model.image_encoder.grid_size == (21, 10)  # (256-16)/12+1, (128-16)/12+1
    assert model.forward_features(images[:2])["tokens"].shape == (2, 210, model.image_encoder.width)


def _train_step(model, images, labels):
    optimizer = torch.optim.AdamW(model.param_groups(base_lr=1e-3))
    out = model(images)
    loss = (
        CrossEntropyLabelSmooth()(out["logits"], labels)
        + MINPLoss(margin=5.0)(out["feat"], labels)
        + ImageTextContrastiveLoss()(out["proj"], model.text_features_for_labels(labels), labels)
    )
    optimizer.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() if p.grad is not None else None for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    return loss, grads, before


def _nonzero(grad) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"vpt": False}, {"kan": False}, {"mode": "full"}, {"vpt": False, "kan": False, "mode": "full"}],
    ids=["default", "vpt_off", "kan_off", "full", "plain_full"],
)
def test_ablation_switches_build_and_train(images, overrides):
    torch.manual_seed(0)
    model = create_model("vpm_tiny", **overrides)
    labels = torch.arange(4).repeat_interleave(2)
    loss, grads, before = _train_step(model, images, labels)
    assert torch.isfinite(loss)
    assert (model.prompts is not None) == overrides.get("vpt", True)
    assert (model.kan is not None) == overrides.get("kan", True)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    backbone = {n for n in grads if n.startswith("image_encoder.")}
    if overrides.get("mode", "prompt") == "prompt":
        assert all(not _nonzero(grads[n]) for n in backbone)  # frozen CLIP image tower gets no gradient
        assert not (changed & backbone)
    else:
        assert any(_nonzero(grads[n]) for n in backbone) and changed & backbone
    assert all(grads[n] is None for n in grads if n.startswith("text_encoder."))
    assert _nonzero(grads["identity_text.ctx"]) and _nonzero(grads["head.classifier.weight"])
    if model.prompts is not None:
        assert _nonzero(grads["prompts.tokens"])
    if model.kan is not None:
        assert _nonzero(grads["kan.gate.weight"]) and _nonzero(grads["kan.out.weight"])


def test_set_mode_and_param_groups():
    model = create_model("vpm_tiny")
    groups = model.param_groups(base_lr=1e-4, prompt_lr_scale=10)
    assert {g["name"] for g in groups} <= {"new", "new_no_decay"}
    assert all(g["lr"] == pytest.approx(1e-3) for g in groups)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    model.set_mode("full")
    names = {g["name"]: g for g in model.param_groups(base_lr=1e-4)}
    assert names["backbone"]["lr"] == pytest.approx(1e-4) and names["new"]["lr"] == pytest.approx(1e-3)
    assert not model.head.bn.bias.requires_grad  # BNNeck has no shift in any mode
    with pytest.raises(ValueError, match="mode"):
        model.set_mode("frozen")


def test_encode_text_shares_space_with_projected_images(images):
    model = create_model("vpm_tiny").eval()
    with torch.no_grad():
        text = model.encode_text(["a man in a red jacket", "a woman carrying a backpack", "a person"])
        scores = text @ model.encode_image_proj(images).T
        labels_text = model.text_features_for_labels(torch.tensor([0, 3]))
    assert text.shape == (3, model.text_dim)
    assert torch.allclose(text.norm(dim=1), torch.ones(3), atol=1e-5)
    assert scores.shape == (3, 8) and bool((scores.abs() <= 1 + 1e-5).all())
    assert labels_text.shape == (2, model.text_dim)
    assert not torch.allclose(labels_text[0], labels_text[1])  # each identity has its own context


def test_refresh_knowledge_bank_uses_identity_context():
    model = create_model("vpm_tiny")
    before = model.kan.identity_bank.clone()
    model.refresh_knowledge_bank(batch_size=3)
    after = model.kan.identity_bank
    assert after.shape == (model.num_classes, model.text_dim) and not torch.allclose(before, after)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.text_features_for_labels(torch.tensor([5])), dim=1)
    assert torch.allclose(after[5], expected[0], atol=1e-5)


def test_checkpoint_round_trip(tmp_path, images):
    model = create_model("vpm_tiny", num_classes=5, num_prompts=2).eval()
    model.refresh_knowledge_bank()
    path = save_checkpoint(model, tmp_path / "tiny.pt", epoch=3)
    loaded = create_model("vpm_tiny", pretrained=path).eval()
    assert loaded.num_classes == 5 and loaded.num_prompts == 2
    with torch.no_grad():
        assert torch.allclose(model.encode(images[:2]), loaded.encode(images[:2]), atol=1e-6)


def test_wrong_architecture_checkpoints_fail_with_one_line(tmp_path):
    tiny = create_model("vpm_tiny")
    path = save_checkpoint(tiny, tmp_path / "tiny.pt")
    with pytest.raises(WeightsError, match=r"tiny\.pt holds a 'vpm_tiny' model, not 'vpm_vit_b32'") as info:
        create_model("vpm_vit_b32", pretrained=path)
    assert "\n" not in str(info.value)
    # the state dict of another architecture under a matching config
    other = create_model("vpm_tiny", kan=False)
    torch.save({"model": other.state_dict(), "config": tiny.config.to_dict()}, tmp_path / "mixed.pt")
    with pytest.raises(
        WeightsError, match=r"mixed\.pt does not fit model 'vpm_tiny': .*missing.*kan\."
    ) as info:
        create_model("vpm_tiny", pretrained=tmp_path / "mixed.pt")
    assert "\n" not in str(info.value)
    # an open_clip weights file of a different CLIP
    torch.save({"visual.conv1.weight": torch.zeros(8, 3, 4, 4)}, tmp_path / "other_clip.pt")
    with pytest.raises(WeightsError, match=r"other_clip\.pt is not an open_clip"):
        create_model("vpm_tiny", pretrained=tmp_path / "other_clip.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"cannot read weights file .*junk\.pt"):
        create_model("vpm_tiny", pretrained=tmp_path / "junk.pt")


def test_missing_weights_and_tags_on_custom_models(tmp_path):
    with pytest.raises(WeightsError, match=r"not found: .*nope\.pt"):
        create_model("vpm_tiny", pretrained=tmp_path / "nope.pt")
    with pytest.raises(WeightsError, match="no published CLIP weights"):
        create_model("vpm_tiny", pretrained="openai")


def test_open_clip_weights_file_loads_into_the_backbone(tmp_path):
    import open_clip

    config = load_model_config(CONFIG_DIR / "vpm_tiny.yaml")
    clip = open_clip.CLIP(**{k: dict(v) if isinstance(v, dict) else v for k, v in config.clip_cfg.items()})
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    model = create_model("vpm_tiny", pretrained=tmp_path / "clip.pt")
    assert torch.equal(model.image_encoder.visual.conv1.weight, clip.visual.conv1.weight)
    assert torch.equal(model.text_encoder.token_embedding.weight, clip.token_embedding.weight)
    # the 4x4 position grid of the native 64x64 input is resized (bicubic) to 16x8 for 256x128 crops
    assert model.image_encoder.visual.positional_embedding.shape[0] == 1 + 16 * 8
    assert torch.equal(
        model.image_encoder.visual.positional_embedding[0], clip.visual.positional_embedding[0]
    )
