"""A plain (non-editable) install ships what the code reads at run time: the model variant YAMLs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "reid", "detectors", "samples")

# Run from the installed copy only: every registered model is created (the small ones built and run on the
# CPU, the CLIP-sized ones read from their variant YAML, as building them takes minutes on a small CPU).
CHECK = """
import sys
from pathlib import Path
import torch
import reid.models
from reid.models import CONFIG_DIR, create_model, list_models, load_model_config

target = Path(sys.argv[1]).resolve()
assert Path(reid.models.__file__).resolve().is_relative_to(target), reid.models.__file__
assert CONFIG_DIR.resolve().is_relative_to(target), CONFIG_DIR
names = list_models()
assert names, "no registered models"
for name in names:
    config = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert config.name == name, (name, config.name)
    if config.clip_model is None:  # a small custom architecture: build and run it
        model = create_model(name).eval()
        with torch.no_grad():
            features = model.encode(torch.randn(2, 3, *model.input_size))
        assert features.shape == (2, model.embed_dim), features.shape
        print("built", name)
    else:
        print("config", name)
"""


def test_wheel_ships_the_model_configs_and_builds_every_model(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", str(source), "-w",
                    str(wheels)], check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("reid_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("reid/models/configs/") and n.endswith(".yaml"))
    assert shipped, f"no model YAMLs in {wheel.name}"
    assert shipped == [
        f"reid/models/configs/{p.name}" for p in sorted((ROOT / "reid/models/configs").glob("*.yaml"))
    ]

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"  # neither the repository nor the source copy is on the path
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built vpm_tiny" in result.stdout
    assert sorted(line.split()[1] for line in result.stdout.splitlines()) == sorted(
        p.stem for p in (ROOT / "reid/models/configs").glob("*.yaml")
    )
