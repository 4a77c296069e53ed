"""The tasks read host data only (group_data/ reads the settings, the single source of truth): from settings.py a
task imports only code (its checks, SettingsError), no value; loading the settings is tasks/lock.py's alone, which
connects to Hetzner for the environment's lock and configures no host."""

import ast
import inspect
from pathlib import Path

import settings

TASKS = Path(__file__).resolve().parent.parent / "tasks"


def _imported_from_settings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    assert not any(isinstance(node, ast.Import) and any(alias.name == "settings" for alias in node.names)
                   for node in ast.walk(tree)), f"{path.name} imports the settings module itself"
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "settings"
            for alias in node.names}


def test_tasks_import_no_setting_values():
    imported = {path.name: _imported_from_settings(path) for path in sorted(TASKS.glob("*.py"))}
    values = {name: sorted(n for n in names if not (inspect.isfunction(getattr(settings, n))
                                                     or inspect.isclass(getattr(settings, n))))
              for name, names in imported.items()}
    assert {name: found for name, found in values.items() if found} == {}
    assert sorted(name for name, names in imported.items() if "load_settings" in names) == ["lock.py"]
