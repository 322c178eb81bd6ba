"""The packages of hofam_tf import downward only: core <- data, core <- model, tasks on top.
Every ``hofam_tf`` import in every module counts, those inside functions too."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hofam_tf"
ROLES = ("data", "model", "tasks")
# what each role may import, besides itself
ALLOWED = {"core": {"core"}, "data": {"core"}, "model": {"core"}, "tasks": {"core", "data", "model"}}


def _role(module: str) -> str:
    """hofam_tf.<role>.x -> role; the top-level modules are the core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROLES else "core"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hofam_tf"):
            if node.module == "hofam_tf":  # from hofam_tf import data -> the package named
                found.update(f"hofam_tf.{a.name}" for a in node.names if a.name in ROLES)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hofam_tf."))
    return found


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield name, path


def test_each_role_is_a_package_with_a_docstring():
    for role in ROLES:
        init = PKG / role / "__init__.py"
        assert init.is_file(), f"hofam_tf/{role}/ is not a package"
        assert len(ast.get_docstring(ast.parse(init.read_text())) or "") > 80, f"{init}: no docstring"


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_go_downward_only(name, path):
    role = _role(name)
    for imported in _imports(path):
        target = _role(imported)
        if name == "hofam_tf":  # the package's lazy table names the public functions of every role
            continue
        assert target == role or target in ALLOWED[role], f"{name} ({role}) imports {imported} ({target})"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule above can fail: a data module importing a task is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from hofam_tf.tasks.predict import run_predict\n")
    assert {_role(m) for m in _imports(bad)} == {"tasks"} and "tasks" not in ALLOWED["data"]


def test_old_flat_module_names_still_import():
    """Before 0.2 every module sat in hofam_tf/; the old names are the new modules themselves."""
    import importlib

    import hofam_tf

    for old, new in hofam_tf.MOVED.items():
        assert importlib.import_module(f"hofam_tf.{old}") is importlib.import_module(f"hofam_tf.{new}")
    from hofam_tf.model import build_hofam  # noqa: F401  (the old hofam_tf.model module's names)
    from hofam_tf.data import build_dataset  # noqa: F401
