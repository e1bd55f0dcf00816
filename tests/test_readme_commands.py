"""The README's two set-up commands are what CI runs: keep them word for word in sync."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    (command,) = [line for line in lines if line.startswith("python3 -m venv") and "pytest" in line]
    return command


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert _ci_command() in readme.splitlines()


def test_readme_main_command_installs_the_same_way_and_runs_the_demo():
    readme_lines = (ROOT / "README.md").read_text().splitlines()
    install = _ci_command().split(' && pip install -e ".[test]"')[0]
    main = f"{install} && pip install -e . && hdetr demo"
    assert main in readme_lines
