"""Wheel build hook: the gateway image's build context as package data of the construct library.

`GatewayImage.from_asset()` builds `runtime/Dockerfile` with a context holding `contract/` and
`runtime/`. Installed from a wheel, the library has no repository around it, so the wheel carries
that context under `eks_hybrid_gateway/image_context/`, laid out like the repository root.

Files are listed one by one (hatchling's `force_include` of a directory copies it verbatim,
caches and all, exempt from every exclude rule), with the same exclusions as the image asset
(`eks_hybrid_gateway.image.ASSET_EXCLUDES` and `.dockerignore`), so the wheel holds exactly
what the asset hashes and `docker build` sees, and the asset hash is the same as in a checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Where the context goes inside the wheel.
CONTEXT_IN_WHEEL = "eks_hybrid_gateway/image_context"
#: The context's top-level entries (the Dockerfile copies contract/ and runtime/).
CONTEXT_DIRECTORIES = ("contract", "runtime")
CONTEXT_FILES = (".dockerignore",)
_SKIPPED_DIRECTORIES = {
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def context_files(root: Path) -> list[str]:
    """The build context's files, relative to `root` (the project directory), sorted."""
    found = [name for name in CONTEXT_FILES if (root / name).is_file()]
    for top in CONTEXT_DIRECTORIES:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            skipped = any(
                part in _SKIPPED_DIRECTORIES or part.endswith(".egg-info")
                for part in relative.parts[:-1]
            )
            if skipped or not path.is_file() or path.name.endswith(_SKIPPED_SUFFIXES):
                continue
            found.append(relative.as_posix())
    if not any(name == "runtime/Dockerfile" for name in found):
        raise FileNotFoundError(f"runtime/Dockerfile is missing under {root}")
    return sorted(found)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds the image build context to the wheel (not to the sdist: it ships the sources)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install finds the context in its checkout
        root = Path(self.root)
        for name in context_files(root):
            build_data["force_include"][str(root / name)] = f"{CONTEXT_IN_WHEEL}/{name}"
