"""The README's commands are the ones CI runs, and its group reference matches conf/."""

from conftest import ROOT

from runner.compose import group_options

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_install_and_test_commands():
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert len(ci_lines) == 2
    install, test = ci_lines
    assert f"{install} && .venv/bin/python -m runner" in README
    assert test in README


def test_readme_lists_every_group_option():
    for group, options in group_options().items():
        for option in options:
            assert f"`{option}`" in README, f"README does not mention {group} option {option}"
