"""`python -m runner [--multirun] [key=value | group=option ...]`"""

from __future__ import annotations

import sys

from runner.errors import UserError, report

USAGE = """usage: python -m runner [--multirun|-m] [group=option ...] [key=value ...]

  groups: model, dataset, adapter, deepspeed, gpu, backend, tracking, experiment (see conf/, experiments/)
  keys:   any axolotl key (lora_r=32, learning_rate=2e-4, special_tokens.pad_token=...) or runner key
          (dry_run=true, runs_root=DIR, stages.merge=false, detach=true, run_name=NAME)
  sweep:  --multirun lora_r=8,16,32 gpu=a100x2,h100x4   (one job per combination)

examples:
  python -m runner                                        # tiny model, offline, CPU
  python -m runner model=mistral adapter=qlora gpu=a100x4 dry_run=true
  python -m runner experiment=sqlqa_mistral lora_r=32 learning_rate=2e-4
"""


def parse_argv(argv: list[str]) -> tuple[bool, list[str]]:
    multirun, overrides = False, []
    for arg in argv:
        if arg in ("--multirun", "-m"):
            multirun = True
        elif arg.startswith("-"):
            raise UserError(f"unknown option '{arg}' (options: --multirun/-m, --help; settings are key=value)")
        else:
            overrides.append(arg)
    return multirun, overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    try:
        multirun, overrides = parse_argv(argv)
        from runner.plan import plan_jobs

        jobs = plan_jobs(overrides, multirun)
        backends = {job.config["backend"]["name"] for job in jobs}
        if len(backends) > 1:
            raise UserError("one sweep cannot mix backends (backend=auto placed some jobs here and some on Modal): "
                            "sweep them separately, or set backend=local or backend=modal")
        if all(job.config.get("dry_run") for job in jobs):
            from runner.report import dry_run_text

            print("\n".join(dry_run_text(job, i, len(jobs)) for i, job in enumerate(jobs, start=1)), end="")
            return 0
        backend = backends.pop()
        if backend == "local":
            from runner.backends import local

            return local.run_jobs(jobs)
        from runner.backends import modal_launcher

        return modal_launcher.run_jobs(jobs)
    except (UserError, KeyboardInterrupt) as e:
        return report(e)
