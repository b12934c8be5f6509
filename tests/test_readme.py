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


def readme_runner_commands() -> list[str]:
    """Every `runner ...` line of the README's bash blocks, its comment cut off."""
    import re

    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command == "runner" or command.startswith("runner "):
                lines.append(command)
    return lines


PLACEHOLDERS = ("...", "~/team/conf")   # a user's own folder or settings: not runnable as written


def test_every_runner_command_of_the_readme_runs_as_a_dry_run(tmp_path):
    """Each command as written (plus dry_run=true where it would start work): it can never go stale."""
    import shlex
    from concurrent.futures import ThreadPoolExecutor

    from conftest import run_cli

    commands = [c for c in readme_runner_commands() if not any(p in c for p in PLACEHOLDERS)]
    assert len(commands) >= 15, commands

    def run(command: str):
        args = shlex.split(command)[1:]
        inspecting = any(a in ("--help", "--cfg", "--info") for a in args)
        if not inspecting and "dry_run=true" not in args:
            args.append("dry_run=true")
        where = [] if inspecting else [f"runs_root={tmp_path / 'runs'}"]
        return command, run_cli(*args, *where, cwd=tmp_path, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        for command, result in pool.map(run, commands):
            assert result.returncode == 0, f"{command}\n{result.stderr[-1500:]}"
    assert not (tmp_path / "runs").exists()
