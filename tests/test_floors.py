"""One import root and clean floors, checked on the source: an AST walk of every import.

The repository keeps its folders at the top and installs them under one root (pyproject's
``[tool.setuptools.package-dir]``)::

    holo/            → holo               reconstruction/  → holo.reconstruction
    segmentation/    → holo.segmentation  napari_plugin/   → holo.napari

Floors (imports only go down or sideways within a stage):

* ground: the data model, conventions, errors, threads, the label vocabulary and the formats
  (:data:`GROUND`) import no stage and nothing above;
* stages: the twin, reconstruction and segmentation (:data:`STAGES`) import the ground floor,
  their own stage and, where physics is shared, the public forward-model modules
  (:data:`SHARED_PHYSICS`) — never another stage's private ``_module`` — and never a GUI toolkit;
* top: pipeline, sample, batch, demo, CLI, napari and the training harness (:data:`TOP`) chain
  the stages. Nothing but the CLI imports the CLI, nothing but the napari plugin the plugin.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Repository folder → the import package it installs as.
ROOTS = {"holo": "holo", "reconstruction": "holo.reconstruction", "segmentation": "holo.segmentation",
         "napari_plugin": "holo.napari"}
#: Names that would exist only if the repository root leaked onto sys.path.
BARE_NAMES = tuple(folder for folder in ROOTS if folder != "holo")

GROUND = ("holo.model", "holo.conventions", "holo.errors", "holo.threads", "holo.labels", "holo.io", "holo.memory")
STAGES = ("holo.twin", "holo.reconstruction", "holo.segmentation")
TOP = ("holo.pipeline", "holo.sample", "holo.batch", "holo.demo", "holo.cli", "holo.napari", "holo.training", "holo.importing", "holo.phase",
       "holo.timelapse")
#: Public forward-model modules that a stage may import from another stage.
SHARED_PHYSICS = ("holo.reconstruction.forward",)
#: Top-floor packages that only they themselves import.
FACES = ("holo.cli", "holo.napari")
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt", "npe2")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _first(module: str, prefixes) -> str | None:
    return next((p for p in prefixes if _within(module, p)), None)


def floor_of(module: str) -> str | None:
    """``"ground"``, ``"stage"`` or ``"top"`` for a module of holo; None if it has no floor."""
    if module == "holo" or _first(module, GROUND):
        return "ground"
    if _first(module, STAGES):
        return "stage"
    if _first(module, TOP):
        return "top"
    return None


def module_name(path: Path) -> str | None:
    """Import name of a source file of the installed packages (None outside them)."""
    rel = path.relative_to(REPO)
    root = ROOTS.get(rel.parts[0])
    if root is None:
        return None
    parts = list(rel.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join([root, *parts])


def imported_modules(source: str, module: str, *, is_package: bool = False, known=frozenset()) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, inside functions too.

    ``from M import n`` counts as ``M.n`` when that is a module in ``known``, else as ``M``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in known else base))
    return found


def _crosses_into_private(target: str) -> bool:
    return any(part.startswith("_") for part in target.split("."))


def floor_violations(module: str, target: str) -> str | None:
    """Why ``module`` must not import ``target``, or None when the import respects the floors."""
    top_name = target.split(".")[0]
    if top_name in BARE_NAMES:
        return f"bare folder name {target!r}: the folder installs as {ROOTS[top_name]}"
    floor = floor_of(module)
    if floor is None:
        return f"{module} has no floor: add it to GROUND, STAGES or TOP in tests/test_floors.py"
    if floor != "top" and top_name in GUI:
        return f"GUI toolkit {target!r} below the top floor"
    if top_name != "holo":
        return None
    face = _first(target, FACES)
    if face and not _within(module, face):
        return f"{target} is a face ({face}): only {face} itself imports it"
    target_floor = floor_of(target)
    if floor == "top" or target_floor == "ground":
        return None
    if floor == "ground":
        return f"ground floor imports the {target_floor} module {target}"
    own_stage = _first(module, STAGES)
    if target_floor == "stage" and _within(target, own_stage):
        return None
    if target_floor == "stage" and _first(target, SHARED_PHYSICS) and not _crosses_into_private(target):
        return None
    return f"stage {own_stage} imports {target} ({target_floor or 'unknown'} floor)"


def _source_files():
    skip = {".venv", ".git", "build", "dist", "__pycache__"}
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if not (set(rel.parts) & skip) and not rel.parts[0].endswith(".egg-info"):
            yield path


def _all_violations() -> list[str]:
    files = list(_source_files())
    names = {p: module_name(p) for p in files}
    known = frozenset(n for n in names.values() if n)
    problems = []
    for path, name in names.items():
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for line, target in imported_modules(source, name or "", is_package=path.name == "__init__.py", known=known):
            if name is None:  # tests, benchmarks, docs scripts: only the bare names are wrong
                why = floor_violations("holo.cli", target) if target.split(".")[0] in BARE_NAMES else None
            else:
                why = floor_violations(name, target)
            if why:
                problems.append(f"{rel}:{line}: {why}")
    return problems


def test_every_import_respects_the_floors():
    problems = _all_violations()
    assert not problems, "imports against the floors:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("holo.model", "from holo.pipeline import reconstruct", True),  # ground → top
        ("holo.io.tcf", "def f():\n    from holo.segmentation import segment", True),  # ground → stage, in a function
        ("holo.reconstruction.tomography.fdt", "import holo.segmentation.infer", True),  # stage → other stage
        ("holo.twin.acquire", "from holo.reconstruction.fields._private import x", True),  # another stage's private
        ("holo.twin.acquire", "from holo.pipeline import reconstruct", True),  # stage → top
        ("holo.segmentation.infer", "import napari", True),  # GUI below the top floor
        ("holo.pipeline", "from holo.napari._layers import labels_layer", True),  # a face from elsewhere
        ("holo.sample", "import segmentation.infer", True),  # bare folder name
        ("holo.twin.acquire", "from holo.reconstruction.forward.propagation import angular_spectrum_propagate", False),
        ("holo.reconstruction.forward.bpm", "from holo.reconstruction.forward.propagation import prepare_forward", False),
        ("holo.reconstruction.fields.retrieve", "from ._private import x", False),  # own stage, relative
        ("holo.sample", "from holo.segmentation import segment\nfrom holo.pipeline import reconstruct", False),
        ("holo.model", "from holo.conventions import potential_to_ri", False),
    ],
)
def test_the_floor_check_catches_upward_imports(module, source, broken):
    """The check itself: an upward or cross-stage import is reported, a legal one is not."""
    problems = [why for _, t in imported_modules(source, module) if (why := floor_violations(module, t))]
    assert bool(problems) == broken, problems


def test_pyproject_lists_every_package_folder():
    """Explicit packages under package-dir: each folder with an ``__init__.py`` is installed."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in ROOTS.items()}
    folders = {module_name(p.parent / "__init__.py") for folder in ROOTS for p in (REPO / folder).rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert set(config["packages"]) == folders


def test_bare_folder_names_do_not_import_outside_the_repository(tmp_path):
    """Installed, holo is one root: from any other folder ``import reconstruction`` fails and
    ``holo.reconstruction`` is the repository's folder (editable installs pick up new modules)."""
    code = (
        "import importlib.util, json, holo.reconstruction, holo.segmentation, holo.napari\n"
        f"print(json.dumps([importlib.util.find_spec(n) is None for n in {list(BARE_NAMES)!r}]))\n"
        "print(holo.reconstruction.__path__[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    missing, path = out.stdout.splitlines()
    assert missing == "[true, true, true]"
    if Path(importlib.util.find_spec("holo").origin).is_relative_to(REPO):  # editable install of this checkout
        assert Path(path) == REPO / "reconstruction"


def test_napari_manifest_names_importable_holo_napari_commands():
    """The plugin manifest points at holo.napari, and every command it names exists."""
    import yaml

    manifest = yaml.safe_load((REPO / "napari_plugin" / "napari.yaml").read_text(encoding="utf-8"))
    for command in manifest["contributions"]["commands"]:
        module, _, attr = command["python_name"].partition(":")
        assert module.startswith("holo.napari."), command
        source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
        assert any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == attr for n in ast.parse(source).body), command
