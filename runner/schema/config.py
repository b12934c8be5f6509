"""The runner-owned part of the composed config, typed: Hydra structured configs in its ConfigStore.

The composed config is one flat namespace: axolotl's keys (checked against axolotl's own schema in
runner/validate.py) beside the runner's keys below. The runner's nodes are typed, one module per concern
(gpu, backend, eval, stages, model_spec, dataset), so a typo (`eval.engin=vllm`) or a wrong type
(`gpu.count=two`) fails when the config is composed, with the key and the closest valid one; value ranges
(`eval.limit=0`) are checked next, before anything runs (runner/validate.py: check_ranges).

config.yaml lists `runner_schema` first in its defaults, so every YAML file merges onto these types.
"""

from __future__ import annotations

from typing import Any

from runner.schema import backend, dataset, evals, gpu, model, objective, stages

# Top-level runner keys: (type, what it is). Everything else at the top level is axolotl's.
SCALARS: dict[str, tuple[type, str]] = {
    "dry_run": (bool, "print the composed axolotl config and the compute spec, run nothing"),
    "detach": (bool, "Modal: submit and return at once with the run ids"),
    "rerun": (bool, "run a job again even when a run with the same config, data and code succeeded"),
    "runs_root": (str, "where run folders are created"),
    "cache_dir": (str, "base models (Hugging Face hub cache) and the tiny model"),
    "run_name": (str, "optional label appended to the run id"),
    "run_id": (str, "set by the runner when it creates the run folder"),
    "run_dir": (str, "the run folder, <runs_root>/<run_id>"),
    "deadline_h": (float, "gpu=auto: the train stage's expected wall time must be within this many hours"),
    "budget_usd": (float, "gpu=auto: the train stage's expected cost must be within this many dollars"),
}
NODES: dict[str, tuple[type, str]] = {
    "gpu": (gpu.GpuSpec, "the gpu group's hardware (Modal string, count, memory, capabilities, price)"),
    "backend": (backend.BackendSettings, "the backend group's settings (auto, local or modal)"),
    "eval": (evals.EvalConfig, "the eval stage's settings"),
    "stages": (stages.StagesConfig, "which stages run (prepare, preprocess, train, merge, eval)"),
    "model_spec": (model.ModelSpec, "architecture figures of the model group (memory model, cost, MFU)"),
    "dataset": (dataset.DatasetSpec, "the dataset group's file paths and record format"),
    "objective": (objective.ObjectiveConfig, "what a sweep compares jobs by (a metrics.json path) and which way"),
}
RUNNER_KEYS: dict[str, str] = {key: text for key, (_, text) in {**SCALARS, **NODES}.items()}
RANGES = {**gpu.RANGES, **backend.RANGES, **evals.RANGES, **model.RANGES}
CHOICES = {**backend.CHOICES, **evals.CHOICES, **model.CHOICES, **dataset.CHOICES, **objective.CHOICES}
SCHEMA_NAME = "runner_schema"


def schema() -> Any:
    """The typed skeleton every composed config starts from (values come from conf/config.yaml)."""
    from omegaconf import BooleanNode, FloatNode, OmegaConf, StringNode

    scalar_nodes = {bool: lambda: BooleanNode(False), str: lambda: StringNode(None), float: lambda: FloatNode(None)}
    root = {key: scalar_nodes[kind]() for key, (kind, _) in SCALARS.items()}
    root.update({key: OmegaConf.structured(kind) for key, (kind, _) in NODES.items()})
    return OmegaConf.create(root)


def register() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent; every process that composes calls it)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if SCHEMA_NAME + ".yaml" not in store.repo:
        store.store(name=SCHEMA_NAME, node=schema())
