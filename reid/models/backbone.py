"""CLIP image and text encoders (open_clip) adapted to person crops: 256x128 input, optional overlapping patches."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def build_clip(
    *,
    clip_model: str | None,
    clip_cfg: dict[str, Any] | None,
    quick_gelu: bool,
    pretrained_tag: str | None = None,
) -> nn.Module:
    """An open_clip CLIP at its native resolution: a named architecture (optionally with a weights tag) or a cfg."""
    import open_clip

    if clip_model is not None:
        kwargs: dict[str, Any] = {"force_quick_gelu": quick_gelu}
        if pretrained_tag is None:
            kwargs["pretrained"] = None
            kwargs["load_weights"] = False
        else:
            kwargs["pretrained"] = pretrained_tag  # downloaded by open_clip when a network exists
        return open_clip.create_model(clip_model, **kwargs)
    assert clip_cfg is not None, "clip_cfg is required when clip_model is None"
    unknown = set(clip_cfg) - {"embed_dim", "vision_cfg", "text_cfg"}
    if unknown:
        raise ValueError(
            f"clip_cfg: unknown keys {sorted(unknown)}; expected embed_dim, vision_cfg, text_cfg"
        )
    return open_clip.CLIP(
        embed_dim=clip_cfg["embed_dim"],
        vision_cfg=dict(clip_cfg["vision_cfg"]),
        text_cfg=dict(clip_cfg["text_cfg"]),
        quick_gelu=quick_gelu,
    )


def resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (1 + h*w, D) position table (class token first) to a new patch grid."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, grid_pos = pos[:1], pos[1:]  # (1, D), (h*w, D)
    assert grid_pos.shape[0] == old_grid[0] * old_grid[1], (grid_pos.shape, old_grid)
    grid_pos = grid_pos.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)  # (1, D, h, w)
    grid_pos = F.interpolate(grid_pos.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(pos.dtype)
    return torch.cat([cls_pos, grid_pos], dim=0)


class ImageEncoder(nn.Module):
    """The CLIP vision transformer as stages (embed, blocks, norm, project) so prompts can enter every layer."""

    def __init__(self, *, visual: nn.Module, input_size: tuple[int, int], patch_stride: int | None) -> None:
        super().__init__()
        if not hasattr(visual, "conv1") or getattr(visual, "attn_pool", None) is not None:
            raise ValueError(
                f"expected an open_clip VisionTransformer with a class token, got {type(visual)}"
            )
        self.visual = visual
        patch = visual.conv1.kernel_size
        stride = (patch_stride, patch_stride) if patch_stride else tuple(patch)
        height, width = input_size
        grid = ((height - patch[0]) // stride[0] + 1, (width - patch[1]) // stride[1] + 1)
        old_grid = tuple(visual.grid_size)
        visual.conv1.stride = stride
        with torch.no_grad():
            new_pos = resize_pos_embed(visual.positional_embedding.data, old_grid, grid)
        visual.positional_embedding = nn.Parameter(new_pos)
        visual.grid_size = grid
        visual.image_size = tuple(input_size)
        self.input_size = tuple(input_size)
        self.grid_size = grid
        self.patch_size = tuple(patch)
        self.width = visual.class_embedding.shape[0]
        self.output_dim = visual.proj.shape[1]
        self.num_layers = len(visual.transformer.resblocks)
        if old_grid != grid:
            logger.debug("position embeddings resized from %s to %s (stride %s)", old_grid, grid, stride)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch, class and position embeddings: (B, 3, H, W) -> (B, 1 + h*w, width)."""
        v = self.visual
        x = v.conv1(images)  # (B, width, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, width)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)  # (B, 1, width)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # (B, 1 + h*w, width)
        return v.ln_pre(x)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """Final layer norm on all tokens (B, T, width)."""
        return self.visual.ln_post(x)

    def project(self, cls: torch.Tensor) -> torch.Tensor:
        """CLS feature (B, width) -> CLIP joint space (B, output_dim)."""
        return cls @ self.visual.proj


class TextEncoder(nn.Module):
    """The CLIP text transformer; encodes token ids or token embeddings (for learnable context) into joint space."""

    def __init__(self, *, clip: nn.Module) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)  # (L, L) causal, -inf above
        self.context_length = int(clip.context_length)
        self.width = int(self.token_embedding.weight.shape[1])
        proj = self.text_projection
        self.output_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids (T, context_length) with CLIP's BPE tokenizer, on the encoder's device."""
        import open_clip

        ids = open_clip.tokenize(list(texts), context_length=self.context_length)
        return ids.to(self.token_embedding.weight.device)

    def encode_embeddings(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Token embeddings (T, L, width) with end-of-text positions (T,) -> text features (T, output_dim)."""
        length = embeddings.shape[1]
        assert length <= self.context_length, (length, self.context_length)
        x = embeddings + self.positional_embedding[:length].to(embeddings.dtype)
        # the causal mask makes the end-of-text feature independent of anything after it, so sequences may be cut
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])  # (T, L, width)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # (T, width)
        proj = self.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (T, L) -> text features (T, output_dim), not normalised."""
        eot = token_ids.argmax(dim=-1)  # the end-of-text token has the largest id
        length = int(eot.max().item()) + 1
        return self.encode_embeddings(self.token_embedding(token_ids[:, :length]), eot)
