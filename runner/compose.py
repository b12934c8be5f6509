"""Command-line overrides → one composed, resolved config per job, with Hydra doing the composing.

Overrides use Hydra's grammar. Two conveniences on top: `key=value` may name any key, present in the
config or not (it is sent to Hydra as `++key=value`), and a group option is checked against the files
in conf/ before Hydra sees it, so a typo gets a suggestion instead of a stack of Hydra errors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UserError, unknown
from runner.paths import CONF_DIR, EXPERIMENTS_DIR, data_file
from runner.schema.config import RUNNER_KEYS

GROUPS = ("model", "dataset", "adapter", "deepspeed", "gpu", "recipe", "backend", "tracking", "experiment")
DRY_RUN_ID = "<run_id>"


@dataclass
class ComposedJob:
    """One job of a run or sweep: its overrides, group choices and composed (unresolved) config."""

    overrides: list[str]           # as the user wrote them
    choices: dict[str, str | None]
    tree: Any = field(repr=False)  # omegaconf.DictConfig

    def resolve(self, run_id: str = DRY_RUN_ID) -> dict[str, Any]:
        """The config as plain data, interpolations filled in for this run id."""
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

        tree = self.tree.copy()
        with open_dict(tree):
            tree.run_id = run_id
        try:
            return OmegaConf.to_container(tree, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            key = getattr(e, "full_key", "") or "a value"
            raise UserError(f"{key} is required here: set {key}=...") from None
        except OmegaConfBaseException as e:
            raise UserError(_first_line(e)) from None


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """Each group's options: the YAML file names in conf/<group>/."""
    return {
        group: sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for group in GROUPS
        if (conf_dir / group).is_dir()
    }


@dataclass(frozen=True)
class JobOverrides:
    hydra: list[str]      # what Hydra composes with (`key=value` sent as `++key=value`)
    display: list[str]    # what the user wrote, one value per swept key


def expand_overrides(overrides: list[str], multirun: bool) -> list[JobOverrides]:
    """Check every override and return the jobs: one set of overrides per job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    options = group_options()
    parser = OverridesParser.create()
    axes: list[list[tuple[str, str]]] = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException as e:
            raise UserError(f"cannot parse override '{text}': {_first_line(e)} (quote values with special characters: key='<value>')") from None
        key = override.key_or_group
        if override.is_sweep_override() and not multirun:
            raise UserError(f"'{text}' is a sweep: add --multirun (-m) to run one job per value")
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise UserError(f"'{text}': only lists, ranges and globs can be swept")
        if key in options and not override.is_delete():
            if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
                values = override._value.filter(options[key])
            elif override.is_sweep_override():
                values = list(override.sweep_string_iterator())
            else:
                values = [override.get_value_element_as_str()]
            for value in values:
                if value not in options[key] and value != "null":
                    raise unknown(f"{key} option", value, options[key])
            prefix = "+" if override.is_add() else ""
            axes.append([(f"{prefix}{key}={v}", f"{prefix}{key}={v}") for v in values])
            continue
        if override.is_hydra_override():
            raise UserError(f"'{text}': hydra.* settings are not used by the runner")
        # A plain `key=value` may introduce a key the config does not have yet (any axolotl key); the
        # runner's own keys are typed (runner/schema/), so a typo there must fail, not add a key.
        element = key if override.package is None else f"{key}@{override.package}"
        if key.split(".")[0] in RUNNER_KEYS and not (override.is_add() or override.is_force_add()):
            if override.is_sweep_override():
                axes.append([(f"{element}={v}", f"{element}={v}") for v in override.sweep_string_iterator()])
            else:
                axes.append([(text, text)])
            continue
        if override.is_sweep_override():
            axes.append([(f"++{element}={v}", f"{element}={v}") for v in override.sweep_string_iterator()])
        elif override.is_delete() or override.is_add() or override.is_force_add():
            axes.append([(text, text)])
        else:
            axes.append([(f"++{element}={override.get_value_element_as_str()}", text)])
    return [JobOverrides([h for h, _ in job], [d for _, d in job]) for job in itertools.product(*axes)]


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    from runner.schema.config import register

    register()
    if not OmegaConf.has_resolver("data_file"):
        OmegaConf.register_resolver("data_file", data_file)
        OmegaConf.register_resolver("abspath", lambda p: str(Path(p).expanduser().resolve()))


def compose_job(overrides: JobOverrides) -> ComposedJob:
    """Compose conf/config.yaml with one job's overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    import yaml

    from runner.config_errors import explain

    _register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), job_name="runner"):
            cfg = compose("config", overrides=overrides.hydra, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
        raise UserError(explain(e, [CONF_DIR, EXPERIMENTS_DIR])) from None
    choices = {g: cfg.hydra.runtime.choices.get(g) for g in GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return ComposedJob(overrides=list(overrides.display), choices=choices, tree=cfg)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
