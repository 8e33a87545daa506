"""The one Registry behind detectors, embedders, re-ID models and dataset readers."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from detectors import create_detector
from pipeline.embedders import create_embedder
from pipeline.errors import PipelineError, UnknownNameError
from pipeline.registry import Registry
from reid.data import load_dataset
from reid.models import create_model


def test_register_by_decorator_or_call_and_create():
    things: Registry[object] = Registry("thing")

    @things.register("box")
    class Box:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    def make_ball(radius: float) -> dict:
        return {"radius": radius}

    assert things.register("ball", make_ball) is make_ball
    assert things.names() == ["ball", "box"]
    assert "box" in things and "cube" not in things
    assert isinstance(things.create("box", size=3), Box) and things.create("box", size=3).size == 3
    assert things.create("ball", radius=2.0) == {"radius": 2.0}
    assert things.get("ball") is make_ball


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ("bal", r"^unknown thing 'bal'; did you mean ball\?$"),
        ("zzz", r"^unknown thing 'zzz'; choose from ball, box$"),
    ],
)
def test_unknown_name_lists_close_matches_or_all(asked: str, message: str):
    things: Registry[object] = Registry("thing")
    things.register("ball", dict)
    things.register("box", dict)
    with pytest.raises(UnknownNameError, match=message) as err:
        things.create(asked)
    # a lookup failure (KeyError) and a user's error (PipelineError, one line, unquoted)
    assert isinstance(err.value, KeyError) and isinstance(err.value, PipelineError)
    assert str(err.value) == err.value.args[0]


def test_an_empty_registry_says_so():
    with pytest.raises(UnknownNameError, match="none is registered"):
        Registry("thing").create("ball")


def test_lazy_name_is_listed_and_its_module_imported_on_first_use(tmp_path: Path, monkeypatch):
    things: Registry[object] = Registry("thing")
    holder = types.ModuleType("registry_holder_for_test")
    holder.THINGS = things
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    (tmp_path / "lazy_thing_module.py").write_text(
        "from registry_holder_for_test import THINGS\n"
        "@THINGS.register('lazy')\n"
        "class Lazy:\n"
        "    def __init__(self, dim=4):\n"
        "        self.dim = dim\n"
    )
    (tmp_path / "silent_thing_module.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert things.register_lazy("lazy", "lazy_thing_module")
    assert things.register_lazy("silent", "silent_thing_module")
    assert not things.register_lazy("gone", "no_such_thing_module")
    assert not things.register_lazy("gone", "no_such_package.module")
    assert things.names() == ["lazy", "silent"]
    assert "lazy_thing_module" not in sys.modules
    assert things.create("lazy", dim=7).dim == 7
    assert "lazy_thing_module" in sys.modules
    monkeypatch.delitem(sys.modules, "lazy_thing_module")
    with pytest.raises(KeyError, match="silent_thing_module does not register a thing named 'silent'"):
        things.create("silent")
    monkeypatch.delitem(sys.modules, "silent_thing_module")


@pytest.mark.parametrize(
    ("create", "error", "message"),
    [
        (lambda: create_detector("yollo"), KeyError, r"unknown detector 'yollo'; did you mean yolo\?"),
        (lambda: create_embedder("onxx"), KeyError, r"unknown embedder 'onxx'; did you mean onnx\?"),
        (lambda: create_model("vpm_vit_b61"), KeyError, r"unknown model 'vpm_vit_b61'; did you mean vpm_vit_b16"),
        (lambda: load_dataset("market", "."), PipelineError, r"unknown dataset format 'market'; did you mean market1501\?"),
    ],
    ids=["detector", "embedder", "model", "dataset"],
)  # fmt: skip
def test_every_registry_names_what_it_holds(create, error: type[Exception], message: str):
    with pytest.raises(error, match=message):
        create()
