"""The architecture as code (docs/design.md#layout-and-ownership): the import-linter contracts in pyproject.toml hold,
each one fails on a planted violation (so none passes vacuously), and no module of the app outgrows one sitting."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

APP = (
    "shared",
    "oauth_callback",
    "provisioning",
    "create_ticket",
    "status_sync",
    "secure_score",
    "portal",
    "reviews",
    "templates",
)
PACKAGES = (*APP, "dev")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(where: Path, contract: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(LINT_IMPORTS), "--config", str(where / "pyproject.toml"), "--no-cache"]
    if contract:
        command += ["--contract", contract]
    return subprocess.run(command, cwd=where, env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the app's packages and its pyproject.toml, where violations can be planted safely."""
    where = tmp_path_factory.mktemp("architecture")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    return where


def test_the_contracts_hold_on_the_real_tree():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 kept, 0 broken" in result.stdout


PLANTS = {
    "kernel": {"shared/_planted.py": "import create_ticket.card\n"},
    "features": {"create_ticket/_planted.py": "import status_sync.sync\n"},  # a lower feature importing a higher
    "deployed": {"secure_score/_planted.py": "import dev.host\n"},
    "public": {"status_sync/_planted.py": "import create_ticket.creation\n"},  # past create_ticket's api.py
    "acyclic": {
        "shared/_planted_a.py": "import shared._planted_b\n",
        "shared/_planted_b.py": "import shared._planted_a\n",
    },
}


def _lint_planted(tree: Path, contract: str, planted: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The contract on the copy with `planted` (path -> source) in it; the copy is as it was afterwards."""
    paths = {tree / name: source for name, source in planted.items()}
    for path, source in paths.items():
        path.write_text(source)
    try:
        return _lint(tree, contract)
    finally:
        for path in paths:
            path.unlink()


@pytest.mark.parametrize("contract", sorted(PLANTS))
def test_each_contract_fails_on_a_planted_violation(tree, contract):
    assert _lint(tree, contract).returncode == 0  # the copy keeps the contract before the plant
    result = _lint_planted(tree, contract, PLANTS[contract])
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


def test_a_circle_hidden_under_type_checking_or_inside_a_function_is_a_circle(tree):
    """The sync and its sweep once imported each other this way, out of the contract's sight."""
    planted = {
        tree / "status_sync" / "_planted_a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    import status_sync._planted_b\n",
        tree / "status_sync" / "_planted_b.py": "def later() -> None:\n    import status_sync._planted_a\n",
    }
    for path, source in planted.items():
        path.write_text(source)
    try:
        result = _lint(tree, "acyclic")
    finally:
        for path in planted:
            path.unlink()
    assert result.returncode != 0 and "No cycles are allowed in status_sync" in result.stdout, result.stdout[-2000:]


def test_independent_features_may_not_import_each_other(tree):
    (tree / "portal" / "_planted.py").write_text("import oauth_callback.authorization\n")
    try:
        result = _lint(tree, "features")
    finally:
        (tree / "portal" / "_planted.py").unlink()
    assert result.returncode != 0 and "BROKEN" in result.stdout


@pytest.mark.parametrize(
    "planted",
    [
        {"provisioning/_planted.py": "import oauth_callback.connections\n"},  # beside connections, not on them
        {"oauth_callback/_planted.py": "import provisioning.status\n"},
        {"secure_score/_planted.py": "import provisioning.tenant_checks\n"},  # a lower layer reaching up
    ],
)
def test_provisioning_stands_on_its_own_in_the_top_layer(tree, planted):
    """Provisioning checks every part from the kernel's and Secure Score's facts; no feature depends on it."""
    result = _lint_planted(tree, "features", planted)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize(
    "planted",
    [
        {"secure_score/_planted.py": "from create_ticket.routing import rules\n"},  # routing is create_ticket's own
        {"provisioning/_planted.py": "import secure_score.tenants\n"},
        {"status_sync/_planted.py": "import create_ticket\n"},  # a feature's blueprint is not its public face
        {"dev/_planted.py": "from secure_score.refresh import SecureScoreRefresh\n"},  # the local host too
    ],
)
def test_a_feature_is_reached_only_through_its_api(tree, planted):
    """Each feature's api.py is the one module another may import; what sits beside it is private."""
    result = _lint_planted(tree, "public", planted)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


def test_importing_a_features_api_keeps_the_contract(tree):
    planted = {"status_sync/_planted.py": "from create_ticket.api import creator_for\n",
               "provisioning/_planted.py": "from secure_score.api import home_id\n"}  # fmt: skip
    assert _lint_planted(tree, "public", planted).returncode == 0


def test_a_circle_between_the_parts_of_dev_is_a_circle(tree):
    """The local host starts the simulators; a simulator that reached back into the host would close a circle."""
    planted = {"dev/servicenow/_planted.py": "import dev.host.run\n"}
    result = _lint_planted(tree, "acyclic", planted)
    assert result.returncode != 0 and "No cycles are allowed in dev" in result.stdout, result.stdout[-2000:]


def test_no_module_of_the_app_is_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for package in APP for p in (ROOT / package).rglob("*.py")}  # fmt: skip
    sizes["function_app.py"] = len((ROOT / "function_app.py").read_text().splitlines())
    assert sizes and max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_no_module_of_dev_is_over_400_lines():
    """The local host and the simulators keep the app's rule too: a module per concern (docs/architecture.md)."""
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "dev").rglob("*.py")}
    assert sizes and max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
