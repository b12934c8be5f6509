"""Overrides → Hydra's overrides → composed configs, the same way for the command line (runner/app.py,
a Hydra application) and for code that composes in-process (tests, the benchmarks, Modal containers).

Users write one flat namespace. Two conveniences on top of Hydra's grammar: `key=value` may name any
axolotl key, present in the config or not (it reaches Hydra as `++key=value`; the runner's own keys stay
`key=value`, so their typos fail against runner/schema/), and a group option is checked against the
config folders before Hydra sees it, so a typo gets a suggestion instead of a stack of Hydra errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UserError, unknown
from runner.paths import CONF_DIR, EXPERIMENTS_DIR, data_file
from runner.schema.config import RUNNER_KEYS

GROUPS = ("model", "dataset", "adapter", "deepspeed", "gpu", "recipe", "backend", "tracking", "experiment",
          "hparams_search")
DRY_RUN_ID = "<run_id>"


@dataclass
class ComposedJob:
    """One job of a run or sweep: its overrides, group choices and composed (unresolved) config."""

    overrides: list[str]           # as the user wrote them
    choices: dict[str, str | None]
    tree: Any = field(repr=False)  # omegaconf.DictConfig, without Hydra's own node
    config_sources: list[str] = field(default_factory=list)   # the config folders it was composed from
    gpu_choice: Any = field(default=None, repr=False)   # gpu=auto: the ranked options (runner/gpu_choice.py)

    def resolve(self, run_id: str = DRY_RUN_ID, **values: Any) -> dict[str, Any]:
        """The config as plain data, interpolations filled in for this run id (and `values`, e.g. the
        runs root and model cache as a Modal container sees them)."""
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

        tree = self.tree.copy()
        with open_dict(tree):
            tree.run_id = run_id
            for key, value in values.items():
                OmegaConf.update(tree, key, value, merge=False)
        try:
            return OmegaConf.to_container(tree, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            key = getattr(e, "full_key", "") or "a value"
            raise UserError(f"{key} is required here: set {key}=...") from None
        except OmegaConfBaseException as e:
            raise UserError(_first_line(e)) from None


def config_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The config folders, highest priority first: the user's (--config-dir, hydra.searchpath), then ours."""
    return [*(Path(p) for p in extra), CONF_DIR]


def group_options(dirs: Iterable[Path] | None = None) -> dict[str, list[str]]:
    """Each group's options: the YAML file names in <dir>/<group>/ across the config folders."""
    dirs = list(dirs) if dirs is not None else [CONF_DIR]
    options: dict[str, set[str]] = {}
    for group in GROUPS:
        for folder in dirs:
            if (Path(folder) / group).is_dir():
                options.setdefault(group, set()).update(p.stem for p in (Path(folder) / group).glob("*.yaml"))
    return {group: sorted(names) for group, names in options.items()}


@dataclass(frozen=True)
class Translated:
    hydra: str      # what Hydra gets
    display: str    # what the user wrote


def translate(overrides: list[str], multirun: bool, dirs: Iterable[Path] | None = None) -> list[Translated]:
    """Check every override and put it in Hydra's form (sweeps stay sweeps: Hydra's sweeper expands them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    options = group_options(dirs)
    parser = OverridesParser.create()
    result = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException as e:
            raise UserError(f"cannot parse override '{text}': {_first_line(e)} "
                            "(quote values with special characters: key='<value>')") from None
        key = override.key_or_group
        if override.is_sweep_override() and not multirun:
            raise UserError(f"'{text}' is a sweep: add --multirun (-m) to run one job per value")
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise UserError(f"'{text}': only lists, ranges and globs can be swept")
        if override.is_hydra_override() or key.startswith("hydra/"):
            result.append(Translated(text, text))
            continue
        if key in options and not override.is_delete():
            if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
                values = override._value.filter(options[key])
                if not values:
                    raise UserError(f"'{text}' matches no {key} option (options: {', '.join(options[key])})")
            elif override.is_sweep_override():
                values = list(override.sweep_string_iterator())
            else:
                values = [override.get_value_element_as_str()]
            for value in values:
                if value not in options[key] and value != "null":
                    raise unknown(f"{key} option", value, options[key])
            result.append(Translated(text, text))
            continue
        # A plain `key=value` may introduce a key the config does not have yet (any axolotl key); the
        # runner's own keys are typed (runner/schema/), so a typo there must fail, not add a key.
        plain = not (override.is_delete() or override.is_add() or override.is_force_add())
        if plain and key.split(".")[0] not in RUNNER_KEYS:
            result.append(Translated(f"++{text}", text))
        else:
            result.append(Translated(text, text))
    return [*result, *_model_group_for(result, parser)]


def _model_group_for(translated: list[Translated], parser: Any) -> list[Translated]:
    """A base_model given without a model group (or an experiment, which picks one) is any model: model=auto
    reads its architecture off its config.json, where the default group would describe the tiny model."""
    keys = {parser.parse_override(t.hydra).key_or_group.lstrip("+~") for t in translated}
    if "base_model" in keys and not keys & {"model", "experiment"}:
        return [Translated("model=auto", "model=auto")]
    return []


def shown(hydra_override: str, translated: list[Translated]) -> str:
    """A job's override as the user wrote it (Hydra's sweeper hands back `++lora_r=8` for `lora_r=8,16`),
    from the command line's translation (runner.app.RunOneJob carries it to the sweeper and launchers)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    key = hydra_override.split("=", 1)[0]
    for t in translated:
        if t.hydra.split("=", 1)[0] != key:
            continue
        if not OverridesParser.create().parse_override(t.hydra).is_sweep_override():
            return t.display              # exactly as typed (Hydra hands back `true` as `True`)
        if t.hydra.startswith("++") and not t.display.startswith("++"):
            return hydra_override[2:]     # one value of the user's sweep, without the `++` we added
    return hydra_override


def shown_overrides(overrides: Iterable[str], translated: list[Translated]) -> list[str]:
    return [shown(o, translated) for o in overrides if not o.startswith("hydra.")]


@dataclass(frozen=True)
class JobOverrides:
    hydra: list[str]      # what Hydra composes with (`key=value` sent as `++key=value`)
    display: list[str]    # what the user wrote, one value per swept key


def expand_overrides(overrides: list[str], multirun: bool) -> list[JobOverrides]:
    """Every job of a run or sweep, expanded by Hydra's own sweeper (the command line's grid)."""
    translated = translate(overrides, multirun)
    hydra_overrides = [t.hydra for t in translated]
    if not multirun:
        return [JobOverrides(hydra_overrides, [t.display for t in translated])]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with _initialized():
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(hydra_overrides), None)
    return [JobOverrides(list(job), [shown(o, translated) for o in job]) for job in jobs]


def setup() -> None:
    """What every process that composes needs first: the schema, our sweeper and launcher, resolvers, and
    config files read once per process."""
    from omegaconf import OmegaConf

    _read_config_files_once()

    from runner.hydra_conf import register as register_hydra_configs
    from runner.schema.config import register as register_schema

    register_schema()
    register_hydra_configs()
    if not OmegaConf.has_resolver("data_file"):
        OmegaConf.register_resolver("data_file", data_file)
        OmegaConf.register_resolver("abspath", lambda p: str(Path(p).expanduser().resolve()))
    if not OmegaConf.has_resolver("gpu_price"):   # a gpu option's price: conf/gpu_prices.yaml
        from runner.gpu_tables import usd_per_gpu_hour

        OmegaConf.register_resolver("gpu_price", usd_per_gpu_hour)


def _read_config_files_once() -> None:
    """Hydra reads and parses every YAML file of a composition again for each job (~20 % of a composition:
    a sweep's, gpu=auto's candidates', the tests' thousands): keep each file's parsed config per process,
    keyed by its path, size and modification time (an edited file is read again), and hand Hydra a copy."""
    import copy
    import os

    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra.plugins.config_source import ConfigResult

    original = FileConfigSource.load_config
    if getattr(original, "reads_once", False):
        return
    parsed: dict[tuple, ConfigResult] = {}

    def load_config(self, config_path: str) -> ConfigResult:
        path = os.path.realpath(os.path.join(self.path, self._normalize_file_name(config_path)))
        try:
            stat = os.stat(path)
        except OSError:   # Hydra's own error for a missing file
            return original(self, config_path)
        key = (self.path, config_path, stat.st_size, stat.st_mtime_ns)
        if key not in parsed:
            parsed[key] = original(self, config_path)
        kept = parsed[key]
        return ConfigResult(config=copy.deepcopy(kept.config), path=kept.path, provider=kept.provider,
                            header=dict(kept.header), is_schema_source=kept.is_schema_source)

    load_config.reads_once = True
    FileConfigSource.load_config = load_config


def _initialized():
    import contextlib

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    setup()
    if GlobalHydra.instance().is_initialized():   # inside the Hydra app (gpu=auto composes its choice there)
        return contextlib.nullcontext()
    return initialize_config_dir(config_dir=str(CONF_DIR), job_name="runner")


def compose_job(overrides: JobOverrides) -> ComposedJob:
    """Compose conf/config.yaml with one job's overrides."""
    import yaml
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with _initialized():
            cfg = compose("config", overrides=overrides.hydra, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
        from runner.config_errors import explain

        raise UserError(explain(e, [CONF_DIR, EXPERIMENTS_DIR])) from None
    return from_hydra(cfg, overrides.display)


def from_hydra(cfg: Any, display: list[str]) -> ComposedJob:
    """A ComposedJob from a config Hydra composed (with its `hydra` node, or inside a running app)."""
    from omegaconf import open_dict

    hydra_node = cfg.get("hydra") if "hydra" in cfg else None
    if hydra_node is None:
        from hydra.core.hydra_config import HydraConfig

        hydra_node = HydraConfig.get()
    choices = {g: hydra_node.runtime.choices.get(g) for g in GROUPS}
    sources = [s.path for s in hydra_node.runtime.config_sources if s.schema == "file"]
    tree = cfg.copy()
    if "hydra" in tree:
        with open_dict(tree):
            del tree["hydra"]
    _absolute_local_paths(tree, Path(hydra_node.runtime.get("cwd") or Path.cwd()))
    return ComposedJob(overrides=list(display), choices=choices, tree=tree, config_sources=sources)


LOCAL_PATH_KEYS = ("dataset.path", "dataset.test_path", "base_model")


def _absolute_local_paths(tree: Any, cwd: Path) -> None:
    """Stages run inside the run folder: a relative path the user typed (`dataset.path=data/train.jsonl`,
    `base_model=./my-model`) that names something here is made absolute against where the runner started,
    so axolotl, the eval stage and the run's records all find the same file."""
    from omegaconf import OmegaConf

    for key in LOCAL_PATH_KEYS:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(tree, parent_key) if parent_key else tree
        if parent is None or leaf not in parent or OmegaConf.is_interpolation(parent, leaf):
            continue
        value = parent[leaf]
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute() \
                and (cwd / value).exists():
            parent[leaf] = str((cwd / value).resolve())


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
