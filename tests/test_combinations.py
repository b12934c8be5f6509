"""Every model × adapter × gpu × deepspeed combination either composes into a config that passes our
checks and axolotl's own schema validation, or is rejected with its one-line message.

The outcomes are pinned in tests/golden/combinations.tsv; after an intended change, regenerate with
    RUNNER_UPDATE_GOLDEN=1 python -m pytest tests/test_combinations.py
and review the diff.
"""

import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from runner.compose import expand_overrides, group_options
from runner.errors import UserError
from runner.plan import plan_job

pytestmark = pytest.mark.slow   # minutes: a real pipeline or every combination; CI runs it

GOLDEN = Path(__file__).parent / "golden" / "combinations.tsv"
# model=auto is every architecture (its figures come from the base model's config.json): tests/test_compose.py;
# gpu=auto is one of the other gpu options, chosen per job: tests/test_gpu_choice.py
OPTIONS = {**group_options(), "model": [m for m in group_options()["model"] if m != "auto"],
           "gpu": [g for g in group_options()["gpu"] if g != "auto"]}
AXES = ("model", "adapter", "gpu", "deepspeed")


def outcome(combo: tuple[str, ...]) -> tuple[str, dict | None]:
    overrides = [f"{axis}={option}" for axis, option in zip(AXES, combo)]
    try:
        job = plan_job(expand_overrides(overrides, multirun=False)[0])
    except UserError as e:
        return str(e), None
    return "ok", {"axolotl": job.axolotl_config, "gpu": job.config["gpu"]}


@pytest.fixture(scope="module")
def outcomes():
    combos = list(itertools.product(*(OPTIONS[axis] for axis in AXES)))
    # Hydra composes in ~0.1 s; two processes halve the wall time of the ~2 000 compositions
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(outcome, combos, chunksize=32))
    return dict(zip(combos, results))


def test_outcomes_match_the_pinned_table(outcomes):
    lines = ["\t".join((*combo, message)) for combo, (message, _) in sorted(outcomes.items())]
    table = "\t".join(AXES) + "\toutcome\n" + "\n".join(lines) + "\n"
    if os.environ.get("RUNNER_UPDATE_GOLDEN"):   # rewritten, not compared with itself: review `git diff`, rerun
        GOLDEN.write_text(table)
        pytest.skip(f"RUNNER_UPDATE_GOLDEN: {GOLDEN.name} rewritten; review the diff and run again without it")
    assert GOLDEN.read_text() == table, "combination outcomes changed: rerun with RUNNER_UPDATE_GOLDEN=1 and review"


def test_every_rejection_is_one_line_and_names_a_setting(outcomes):
    for combo, (message, _) in outcomes.items():
        if message != "ok":
            assert "\n" not in message and "=" in message, (combo, message)


def test_both_outcomes_occur_for_every_option(outcomes):
    for index, axis in enumerate(AXES):
        for option in OPTIONS[axis]:
            seen = {message == "ok" for combo, (message, _) in outcomes.items() if combo[index] == option}
            assert True in seen, f"{axis}={option} never composes into a valid config"


def test_accepted_configs_pass_axolotls_own_validation(outcomes):
    """axolotl's pydantic schema (with the GPU's capabilities) accepts what we accept."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    accepted = [(combo, data) for combo, (message, data) in outcomes.items() if message == "ok"]
    assert len(accepted) > 100
    for combo, data in accepted:
        gpu = data["gpu"]
        capabilities = {"bf16": gpu["bf16"], "fp8": False, "tf32": gpu["bf16"], "n_gpu": gpu["count"],
                        "n_node": 1, "compute_capability": "sm_90" if gpu["bf16"] else "sm_75"}
        try:
            validate_config(DictDefault(data["axolotl"]), capabilities=capabilities,
                            env_capabilities={"torch_version": "2.8.0"})
        except Exception as e:  # noqa: BLE001 - report which combination axolotl refused
            pytest.fail(f"axolotl rejects {dict(zip(AXES, combo))}: {str(e)[:300]}")
