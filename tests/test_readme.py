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


def test_readme_lists_every_runner_key_of_the_schema():
    import dataclasses

    from runner.schema.config import NODES, SCALARS

    section = README.split("## Reference: runner keys", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]

    def fields(prefix, cls):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) or (isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory)):
                yield from fields(f"{prefix}.{f.name}", f.default_factory)
            else:
                yield prefix, f.name

    for key in SCALARS:
        assert any(f"`{key}`" in row for row in rows), key
    for node, (cls, _) in NODES.items():
        for prefix, name in fields(node, cls):
            assert any(f"`{prefix}." in row and name in row for row in rows), f"{prefix}.{name}"
