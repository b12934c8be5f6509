"""What Hydra's own config needs from the runner, in its ConfigStore: the sweeper and launcher configs
(`hydra/sweeper=runner`, `hydra/launcher=runner`, naming the classes in runner/launcher.py) and the help
page (`hydra/help=runner`). conf/config.yaml selects all three. Only the schema is read here (for the
help page): composing never imports the launcher, which plans with what composing gives."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf


@dataclass
class RunnerSweeperConf:
    _target_: str = "runner.launcher.RunnerSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


@dataclass
class RunnerLauncherConf:
    _target_: str = "runner.launcher.RunnerLauncher"


@dataclass
class LocalLauncherConf:
    _target_: str = "runner.launcher.LocalLauncher"


@dataclass
class ModalLauncherConf:
    _target_: str = "runner.launcher.ModalLauncher"


# Hydra's submitit launcher configs, with the resources each job derives from its own gpu option and
# backend settings left null here (runner/launcher.py: submitit_resources); set one to pin it for all.
@dataclass
class PerJobResources:
    timeout_min: int | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None
    mem_gb: int | None = None
    nodes: int | None = None
    name: str | None = None


@dataclass
class SlurmLauncherConf(PerJobResources, SlurmQueueConf):
    _target_: str = "runner.launcher.SlurmLauncher"
    # a job that reaches its time limit saves a checkpoint and is requeued this often (Hydra's 0: never;
    # submitit's own default is 3); preemptions requeue regardless
    max_num_timeout: int = 3


@dataclass
class SubmititLocalLauncherConf(PerJobResources, LocalQueueConf):
    _target_: str = "runner.launcher.SubmititLocalLauncher"


LAUNCHERS = {"runner": RunnerLauncherConf, "runner_local": LocalLauncherConf, "runner_modal": ModalLauncherConf,
             "runner_slurm": SlurmLauncherConf, "runner_submitit_local": SubmititLocalLauncherConf}


@dataclass
class OptunaSearchConf(OptunaSweeperConf):
    """hydra/sweeper=optuna: the plugin's own settings, run by runner.search.OptunaSearch (its checks first)."""
    _target_: str = "runner.search.OptunaSearch"


def register() -> None:
    """Put the sweepers, the launchers and the help page in Hydra's ConfigStore (conf/config.yaml selects
    them); `optuna` replaces the plugin's own entry (imported above, so it is stored first)."""
    store = ConfigStore.instance()
    if "runner.yaml" not in store.repo.get("hydra", {}).get("sweeper", {}):
        store.store(group="hydra/sweeper", name="runner", node=RunnerSweeperConf, provider="runner")
        store.store(group="hydra/sweeper", name="optuna", node=OptunaSearchConf, provider="runner", replace=True)
        for name, node in LAUNCHERS.items():
            store.store(group="hydra/launcher", name=name, node=node, provider="runner")
        store.store(group="hydra/help", name="runner", node=help_page(), provider="runner")


def help_page() -> dict[str, str]:
    """`runner --help`: the groups and their options from the config folders, the runner's keys from the
    schema, Hydra's flags."""
    from runner.schema.config import RUNNER_KEYS

    width = max(map(len, RUNNER_KEYS)) + 2
    keys = "\n".join(f"  {key:<{width}}{text}" for key, text in RUNNER_KEYS.items())
    return {
        "app_name": "runner",
        "header": "runner: config-as-code fine-tuning with axolotl, on this machine or on Modal\n\n"
                  "usage: runner [--multirun|-m] [group=option ...] [key=value ...]\n",
        "footer": "See the composed config with --cfg job, where it came from with --info defaults-tree,\n"
                  "and README.md for the rest. Hydra's own help: --hydra-help.\n",
        "template": "${hydra.help.header}\n"
                    "== Groups: choose one option each (group=option) ==\n\n$APP_CONFIG_GROUPS\n\n"
                    "== Runner keys (typed, runner/schema/): key=value, nested with dots ==\n\n" + keys + "\n\n"
                    "== axolotl keys ==\n\n"
                    "  Any key of axolotl's config, in the composed config or not: lora_r=32 learning_rate=2e-4\n"
                    "  special_tokens.pad_token='<pad>'. Checked against axolotl's own schema before anything runs.\n\n"
                    "== Sweeps (-m): one job per combination ==\n\n"
                    "  runner -m lora_r=8,16,32 gpu=a100x2,h100x4\n"
                    "  runner -m experiment='glob(sqlqa_*)' dry_run=true\n\n"
                    "== Flags ==\n\n$FLAGS_HELP\n${hydra.help.footer}",
    }
