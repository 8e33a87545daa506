"""Standard re-ID image transforms (torchvision), parameterised by the model's input size and mean/std."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T


def build_transforms(
    *,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    flip_prob: float = 0.5,
    pad: int = 10,
    erasing_prob: float = 0.5,
) -> T.Compose:
    """Resize to (H, W) bicubic; for training also flip, pad + random crop and (after normalising) erasing."""
    height, width = int(input_size[0]), int(input_size[1])
    steps: list = [T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC)]
    if train:
        steps.append(T.RandomHorizontalFlip(p=flip_prob))
        if pad > 0:
            steps += [T.Pad(pad), T.RandomCrop((height, width))]
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if train and erasing_prob > 0:
        # value 0 after normalising erases with the dataset mean colour
        steps.append(T.RandomErasing(p=erasing_prob, value=0))
    return T.Compose(steps)
