"""The public surface follows the library's conventions, module by module.

* options are keyword-only: in every public function, constructor and method (of
  a name in a public module's ``__all__``), no parameter with a default value can
  be passed by position; the constructors of frozen dataclasses that only hold
  values are exempt, and so are methods that keep an inherited signature;
* ``kind`` names a sample's kind only: no public parameter is called ``kind``
  unless it takes one of :data:`glitchlib.settings.SAMPLE_KINDS`, and the glitch a run
  injects is called ``glitch``;
* ``__all__`` names what exists, and architecture internals stay private.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import glitchlib

PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(glitchlib.__path__, "glitchlib.")
    if not any(part.startswith("_") for part in m.name.split(".")) and m.name != "glitchlib.cli"
)
# parameters named ``kind`` that do take a sample kind
SAMPLE_KIND_PARAMETERS = {"glitchlib.report.samples.label_confusion"}


def _public_callables():
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if inspect.isclass(obj):
                target = obj.__init__
                if dataclasses.is_dataclass(obj) or issubclass(obj, BaseException) or target is object.__init__:
                    yield from _public_methods(f"{name}.{attr}", obj)
                    continue
            elif inspect.isfunction(obj):
                target = obj
            else:
                continue
            yield f"{name}.{attr}", target
            if inspect.isclass(obj):
                yield from _public_methods(f"{name}.{attr}", obj)


# methods that keep a signature they inherit (torch.nn.Module.train(mode=True))
INHERITED_SIGNATURES = {"train"}


def _public_methods(qualname: str, cls):
    for attr, member in vars(cls).items():
        if attr.startswith("_") or attr in INHERITED_SIGNATURES:
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(function):
            yield f"{qualname}.{attr}", function


def _defined(f) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def test_public_modules_are_found():
    assert {"glitchlib.signals", "glitchlib.report", "glitchlib.settings"} <= set(PUBLIC_MODULES)
    assert len(list(_public_callables())) > 100


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_names_exist(module):
    mod = importlib.import_module(module)
    missing = [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_options_are_keyword_only():
    offenders = sorted({f"{_defined(f)}({p.name}=...)" for _, f in _public_callables()
                        for p in inspect.signature(f).parameters.values()
                        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty})
    assert not offenders, "options with a default must be keyword-only (after *): " + ", ".join(offenders)


def test_kind_means_a_sample_kind():
    offenders = sorted({_defined(f) for _, f in _public_callables()
                        if "kind" in inspect.signature(f).parameters and _defined(f) not in SAMPLE_KIND_PARAMETERS})
    assert not offenders, f"a parameter named kind that is not a sample kind: {offenders}"
    from glitchlib import glitches, settings
    assert "glitch" in inspect.signature(glitches.inject).parameters
    assert settings.SAMPLE_KINDS == ("clean", "mislabeled", "anomaly", "corrupted")
    assert not set(settings.SAMPLE_KINDS) & set(settings.GLITCHES)


def test_architecture_internals_are_private():
    from glitchlib import models
    for name in ("BasicBlock", "map_by_position"):
        assert name not in models.__all__ and not hasattr(models, name)


def test_settings_are_built_by_keyword():
    settings_classes = {f"{obj.__module__}.{obj.__qualname__}": obj
                        for name in PUBLIC_MODULES for attr in getattr(importlib.import_module(name), "__all__", ())
                        for obj in [getattr(importlib.import_module(name), attr)]
                        if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and attr.endswith("Settings")}
    assert {"glitchlib.settings.ExperimentSettings", "glitchlib.settings.TrainSettings"} <= set(settings_classes)
    positional = sorted(q for q, cls in settings_classes.items() if not all(f.kw_only for f in dataclasses.fields(cls)))
    assert not positional, f"settings dataclasses must be keyword-only (kw_only=True): {positional}"
    from glitchlib.settings import TrainSettings
    with pytest.raises(TypeError):
        TrainSettings(0.1, 128, 7)


def test_documented_parameters_match_the_signature():
    """Where a docstring has a Parameters section, it names every parameter, and no other."""
    import re

    problems = set()
    for _, f in _public_callables():
        doc = inspect.getdoc(f) or ""
        match = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
        if not match:
            continue
        documented = set()
        for line in match.group(1).splitlines():
            head = re.match(r"^(\*{0,2}[A-Za-z_][\w, *]*?)\s*(?::|$)", line)  # "name : type", "a, b", "a, b : t"
            if head and not line.startswith(" "):
                documented |= {n.strip().lstrip("*") for n in head.group(1).split(",")}
        params = {p.name for p in inspect.signature(f).parameters.values() if p.name not in ("self", "cls")}
        if params - documented:
            problems.add(f"{_defined(f)}: undocumented {sorted(params - documented)}")
        if documented - params:
            problems.add(f"{_defined(f)}: documents absent {sorted(documented - params)}")
    assert not problems, "\n".join(sorted(problems))
