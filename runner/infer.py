"""`python -m runner.infer run=RUN_ID prompt="..." [context="..."]` — answer from a run's model.

The prompt is rendered with the run's own training template (for sqlqa: `prompt` is the question and
`context` the CREATE TABLE statements), so the model sees what it was trained on. Local runs load the
merged model (or base + adapter) here; Modal runs are answered by `runner.serve.complete` on Modal, which
runs this same code next to the weights on the runs Volume.
"""

from __future__ import annotations

import sys
from dataclasses import Field, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from runner.errors import UserError, report, unknown
from runner.evals.answer import Answerer, InferOptions, Question

USAGE = """usage: python -m runner.infer run=RUN_ID prompt="..." [context="..."] [key=value ...]
       python -m runner.infer run=RUN_ID interactive=true

  run             the run id (or a unique prefix) under runs_root
  prompt          the question / instruction; rendered with the run's training template
  context         sqlqa runs: the CREATE TABLE statements (the template's input field)
  interactive     true: a prompt loop (`:context TEXT` sets the context, `:quit` or Ctrl-D leaves)
  runs_root       where run folders are (default ./runs)
  model           tuned (default) or base
  max_new_tokens  default 128
  engine          auto (default) | vllm | transformers
  raw             true: send `prompt` to the model as is, without the template
"""

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class InferCommand:
    """The command's own settings; how to answer is InferOptions'. Both declare every key= this command takes."""

    run: str | None = None
    prompt: str = ""
    context: str | None = None
    interactive: bool = False
    runs_root: str = "runs"


# ---- arguments ----------------------------------------------------------------------------------
# key=value, each value converted to its field's type and checked against its metadata. Values stay free
# text (a prompt may hold '=', ':' or quotes), so no YAML or override grammar parses them.
def parse_args(argv: list[str]) -> tuple[InferCommand, InferOptions]:
    declared = {f.name: (cls, f) for cls in (InferCommand, InferOptions) for f in fields(cls)}
    values: dict[type, dict[str, Any]] = {InferCommand: {}, InferOptions: {}}
    for arg in argv:
        key, sep, text = arg.partition("=")
        if not sep:
            raise UserError(f"expected key=value, got '{arg}' (see --help)")
        if key not in declared:
            raise unknown("setting", key, declared)
        cls, spec = declared[key]
        values[cls][key] = _value(key, text, spec)
    return InferCommand(**values[InferCommand]), InferOptions(**values[InferOptions])


def _value(key: str, text: str, spec: Field) -> Any:
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", str(spec.type))
    if kind == "bool":
        if text.lower() not in TRUE + FALSE:
            raise UserError(f"{key} must be true or false, got '{text}'")
        return text.lower() in TRUE
    if kind == "int":
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{key} must be a whole number, got '{text}'") from None
        if value < spec.metadata.get("min", value):
            raise UserError(f"{key} must be at least {spec.metadata['min']}")
        return value
    if "choices" in spec.metadata and text not in spec.metadata["choices"]:
        raise unknown(key, text, spec.metadata["choices"])
    return text


def answer_remotely(run_id: str, questions: list[Question], options: InferOptions) -> list[str]:
    """A Modal run: `runner.serve.complete` answers next to its weights (see runner/serve.py)."""
    from runner.serve import complete_remotely

    return complete_remotely(run_id, [asdict(q) for q in questions], asdict(options))


def is_modal_run(folder: Any) -> bool:
    from runner.backends.registry import backend_named
    from runner.lookup import backend_of

    return backend_named(backend_of(folder)).remote


# ---- command line -------------------------------------------------------------------------------
def interactive(ask: Any, sql: bool, context: str | None) -> None:
    print("type a prompt" + (" (`:context CREATE TABLE ...` sets the schema)" if sql else "")
          + "; `:quit` or Ctrl-D leaves", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return
        if line in (":quit", ":q", ":exit"):
            return
        if line.startswith(":context"):
            context = line[len(":context"):].strip() or None
            print(f"context: {context or '(none)'}", file=sys.stderr)
        elif line:
            print(ask(Question(line, context)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0 if argv else 2
    answerer = None
    try:
        command, options = parse_args(argv)
        if command.run is None:
            raise UserError("run=RUN_ID is required (see `python -m runner.runs list`)")
        loop = command.interactive
        if not loop and not command.prompt:
            raise UserError('prompt="..." is required (or interactive=true)')
        from runner.lookup import find_run, run_folders

        root = Path(command.runs_root)
        if not run_folders(root):
            raise UserError(f"no runs under {root} (set runs_root=DIR)")
        folder = find_run(root, command.run)
        config = folder.composed()
        question = Question(command.prompt, command.context or None)
        if is_modal_run(folder):
            def ask(q: Question) -> str:
                return answer_remotely(folder.run_id, [q], options)[0]
        else:
            from runner.evals.models import tuned_model

            if options.model == "tuned":
                tuned_model(folder.path, config)   # a missing model is a one-line error before torch loads
            answerer = Answerer(folder.path, config, options)

            def ask(q: Question) -> str:
                return answerer.answer([q])[0]

        if loop:
            interactive(ask, (config.get("dataset") or {}).get("format") == "sqlqa", question.context)
        else:
            print(ask(question))
    except (UserError, KeyboardInterrupt) as e:
        return report(e)
    finally:
        if answerer is not None:
            answerer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
