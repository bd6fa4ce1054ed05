"""The package's shape: stages import one way, nothing reaches for another module's private names.

Read from the source with ``ast`` (nothing is imported), so the test fails on the line that
breaks a rule, whether the import sits at the top of a module or inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "quackae"
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public despite the underscore

# A stage may import its own modules and those of lower stages only (data flows one way).
STAGES = ("io", "dataset", "ingest", "model", "classify", "detect", "report")
RANK = {name: i for i, name in enumerate(STAGES)}
# The application layer (CLI, demo, the seed's module names) and the generator beside the
# pipeline may import anything; only they may import ``quackae.synth``.
APPLICATION = {"cli", "demo", "__main__", "ae_processor", "autoencoder", "cp_tokenized_data"}
SYNTH = "synth"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every quackae import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("quackae")]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, mod] if mod else base)
            if mod.startswith("quackae"):
                found.append((node.lineno, mod, [a.name for a in node.names]))
    return found


def top(mod: str) -> str:
    """The first component under ``quackae`` (``quackae.ingest.flatten`` -> ``ingest``)."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def targets(mod: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The modules an import statement reaches: ``from quackae import ingest`` reaches ingest."""
    subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
    return subs or [mod]


def test_stages_import_one_way():
    known = modules()
    wrong = []
    for name, path in known.items():
        here = top(name)
        if here in APPLICATION or here == SYNTH or here == "":
            continue
        assert here in RANK, f"{name}: a module outside every stage; add its stage to STAGES"
        for line, mod, names in imports(path, name):
            for target in targets(mod, names, known):
                there = top(target)
                if there == SYNTH:
                    wrong.append(f"{path.name}:{line} {name} imports the generator {target}")
                elif there in APPLICATION:
                    wrong.append(
                        f"{path.name}:{line} {name} imports the application layer {target}"
                    )
                elif there in RANK and RANK[there] > RANK[here]:
                    wrong.append(
                        f"{path.name}:{line} {name} ({here}) imports {target} ({there}), a later "
                        "stage"
                    )
    assert not wrong, "\n".join(wrong)


def defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions, classes, globals and attributes it sets."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_another_modules_private_names():
    """``from quackae.x import _name``, ``x._name`` and ``obj._attr`` defined elsewhere are refused.

    An attribute access ``obj._attr`` counts when ``_attr`` is defined by another quackae module
    and not by the module using it: reaching into another stage's object.
    """
    files = [
        *sorted(PACKAGE.rglob("*.py")),
        *sorted((PACKAGE.parents[1] / "benchmarks").glob("*.py")),
    ]
    trees = {path: ast.parse(path.read_text()) for path in files}
    own = {path: defined_private_names(tree) for path, tree in trees.items()}
    ours = set().union(*(own[p] for p in files if PACKAGE in p.parents))
    wrong = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quackae"):
                wrong += [
                    f"{path.name}:{node.lineno} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr in ours
                and node.attr not in own[path]
                and node.attr not in NAMEDTUPLE_API
            ):
                wrong.append(f"{path.name}:{node.lineno} uses {ast.unparse(node)}")
    assert not wrong, "\n".join(wrong)


def test_every_stage_is_a_package_with_a_docstring():
    for stage in (*STAGES, SYNTH, "cli"):
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), f"{stage}/ has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{stage}/__init__.py says nothing"


def test_the_seed_names_stay_importable():
    """Users of the original import these names; they are the package's own classes."""
    from quackae import ae_processor, autoencoder, cp_tokenized_data
    from quackae.model import autoencoder as model
    from quackae.model import controller, datamodule

    assert autoencoder.QuackAutoEncoder is model.QuackAutoEncoder
    assert autoencoder.AutoencoderWriter is model.AutoencoderWriter
    assert cp_tokenized_data.QuackTokenizedDataModule is datamodule.QuackTokenizedDataModule
    assert ae_processor.main is controller.main
    assert callable(ae_processor.build_parser)


@pytest.mark.parametrize(
    "argv", [["-m", "quackae.ae_processor", "--help"], ["-m", "quackae", "--help"]]
)
def test_the_seed_controller_runs_under_its_name(argv):
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--data_dir" in out.stdout if "ae_processor" in argv[1] else "flatten" in out.stdout
