"""The house: each folder is a role and imports flow one way (README, "Layout").

cli -> jobs -> frames -> model / quality -> ffmpeg, with training beside jobs (it uses quality and
model, never jobs); errors, settings and files sit under everything. Function-level imports count
too: a lazy import in the wrong direction is still a wrong arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "espcn_video"
BASE = {"errors", "settings", "files"}
# room -> the rooms it may import (besides itself and BASE)
ALLOWED: dict[str, set[str]] = {
    "cli": {"jobs", "frames", "model", "quality", "training", "ffmpeg", "__init__"},
    "jobs": {"frames", "model", "quality", "ffmpeg"},
    "training": {"model", "quality", "ffmpeg"},
    "frames": {"model", "quality", "ffmpeg"},
    "quality": {"model", "ffmpeg"},
    "model": {"ffmpeg"},
    "ffmpeg": set(),
    "errors": set(),
    "settings": {"errors"},
    "files": set(),
    "__main__": {"cli"},
    "__init__": {"jobs", "model", "quality", "ffmpeg", "frames"},
}


def room_of(module: str) -> str:
    """espcn_video.jobs.upscale -> jobs; espcn_video.errors -> errors; espcn_video -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("espcn_video"):
            found.add(node.module)
            if node.module == "espcn_video":
                found.update(f"espcn_video.{a.name}" for a in node.names if a.name != "__version__")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("espcn_video"))
    return found


def test_imports_flow_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        room = room_of(module)
        allowed = ALLOWED[room] | {room} | (set() if room in BASE else BASE)
        wrong += [
            f"{module} imports {target} ({room} -> {room_of(target)})"
            for target in sorted(imports_of(path))
            if room_of(target) not in allowed
        ]
    assert not wrong, "imports against the house's arrows:\n" + "\n".join(wrong)


def test_ffmpeg_room_never_imports_torch() -> None:
    for path in sorted((PACKAGE / "ffmpeg").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n.split(".")[0] in ("torch", "openvino", "onnxruntime") for n in names), path.name


def test_every_import_of_the_package_resolves() -> None:
    """Function-level imports too (the lazy ones run only on some paths): each named module and
    name exists, in the package, the tests and the tools."""
    import importlib

    missing = []
    for path in sorted(
        [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").glob("*.py"), *(PACKAGE.parent / "tools").glob("*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("espcn_video"):
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if not hasattr(module, a.name) and not _is_submodule(node.module, a.name)
                ]
    assert not missing, "imports that name nothing:\n" + "\n".join(missing)


def _is_submodule(package: str, name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"{package}.{name}") is not None
