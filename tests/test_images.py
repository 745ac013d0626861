"""Per-service images: each installs only what its own code imports (the API image carries no
torch or pandas), with the same pins as requirements.txt.

The import closure is computed from the source (every import reachable from the service's entry
modules, also those inside functions, except ``if TYPE_CHECKING:`` blocks), then mapped to
distributions with ``importlib.metadata``; a subprocess also imports the API with torch and
pandas made unimportable.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_PACKAGES = {"shared", "services", "scripts"}
REQUIREMENTS = REPO / "requirements.txt"
# image → (its requirements file, entry modules, distributions it must not carry)
IMAGES = {
    "recommender_app": (
        ["services.recommender_app.wsgi", "services.recommender_app.__main__"],
        # faiss-cpu is in: RECSYS_RECOMMENDER_LOCAL_SEARCH searches in the worker.
        {"torch", "pandas", "pyarrow", "matplotlib"},
    ),
    "faiss_app": (
        ["services.faiss_app.wsgi", "services.faiss_app.__main__"],
        {"torch", "pandas", "pyarrow", "matplotlib"},
    ),
    "incremental_trainer": (
        [
            "services.incremental_trainer.__main__",
            "services.incremental_trainer.service",
            "scripts.generate_data",
            "scripts.initial_training",
            "scripts.train_triplet",  # compose's triplet-trainer runs it from this image
        ],
        set(),
    ),
}
# Imported by the gunicorn config files (executed by gunicorn, not imported by a module).
GUNICORN_CONFIGS = {
    "recommender_app": "services/recommender_app/gunicorn.conf.py",
    "faiss_app": "services/faiss_app/gunicorn.conf.py",
}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned with =="
            found[normalize(name)] = version
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_file(module: str) -> Path | None:
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module: str) -> list[str]:
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def third_party_imports(entries: list[str], extra_files: list[Path] = ()) -> set[str]:
    """Top-level third-party module names reachable from ``entries``."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo: list[tuple[str, Path]] = [(m, f) for m in entries if (f := module_file(m))]
    todo += [(p.stem, p) for p in extra_files]
    while todo:
        module, path = todo.pop()
        if str(path) in seen:
            continue
        seen.add(str(path))
        for name in _imports(ast.parse(path.read_text()), module):
            top = name.split(".")[0]
            if top in LOCAL_PACKAGES:
                target = module_file(name)
                if target is not None:
                    todo.append((name, target))
                # the package __init__ files on the way are imported too
                parts = name.split(".")
                for i in range(1, len(parts)):
                    init = module_file(".".join(parts[:i]))
                    if init is not None:
                        todo.append((".".join(parts[:i]), init))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return outside


def distributions(modules: set[str]) -> set[str]:
    mapping = importlib.metadata.packages_distributions()
    found = set()
    for module in modules:
        dists = mapping.get(module)
        assert dists, f"no installed distribution provides {module!r}"
        found |= {normalize(d) for d in dists}
    return found


def requirements_file(image: str) -> Path:
    return REPO / "Dockerfiles" / "requirements" / f"{image}.txt"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_requirements_cover_its_imports_and_nothing_heavy(image: str) -> None:
    entries, forbidden = IMAGES[image]
    configs = [REPO / GUNICORN_CONFIGS[image]] if image in GUNICORN_CONFIGS else []
    needed = distributions(third_party_imports(entries, configs))
    listed = pins(requirements_file(image))
    missing = needed - set(listed)
    assert not missing, f"{image} imports {sorted(missing)} but its image does not install them"
    assert not forbidden & set(listed), f"{image} installs {sorted(forbidden & set(listed))}"
    assert not forbidden & needed, f"{image} code imports {sorted(forbidden & needed)}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_pins_are_the_projects_pins(image: str) -> None:
    project = pins(REQUIREMENTS)
    for name, version in pins(requirements_file(image)).items():
        assert project.get(name) == version, (
            f"{image}: {name}=={version}, requirements.txt says {project.get(name)}"
        )


def test_closure_follows_local_imports_and_skips_type_checking_blocks() -> None:
    # shared.config imports _typeshed only under TYPE_CHECKING; shared.kafka needs confluent_kafka.
    assert "_typeshed" not in third_party_imports(["shared.config"])
    assert "confluent_kafka" in third_party_imports(["services.recommender_app.deps"])
    assert "torch" in third_party_imports(["services.incremental_trainer.service"])


def test_the_api_imports_without_torch_or_pandas() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'pandas', 'faiss', 'pyarrow'}:\n"
        "            raise ImportError(f'{name} is not in the API image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import services.recommender_app.app, services.recommender_app.__main__\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    done = subprocess.run(
        [sys.executable, "-c", blocker],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("image", sorted(GUNICORN_CONFIGS))
def test_http_images_carry_their_server(image: str) -> None:
    assert "gunicorn" in pins(requirements_file(image))
