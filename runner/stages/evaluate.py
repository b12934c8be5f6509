"""eval: the base and the tuned model on the same held-out split, with the same prompts, greedy.

For text-to-SQL data (dataset.format sqlqa) both models answer every held-out question; the answers are
scored for normalised exact match and execution accuracy (runner.evals.sql, the same code as
`python -m runner.evals.sql`) and saved to eval/predictions-{base,tuned}.jsonl. For every format the eval
loss and perplexity of both models on the held-out split are measured (each record's loss kept in
eval/losses-{base,tuned}.json). Results go to metrics.json:

    eval:          {split, n, engine, seconds, base: {...}, tuned: {...}, gains: {figure: {gain, interval_95}}}
    summary_lines: [[label, "base → tuned; gain, 95 % CI"], ...]   (printed by the run summary)

The split and the model held between the two evaluations: runner.evals.heldout; the base's figures cached
for a sweep's other jobs: runner.evals.base_cache; gains and summary lines: runner.evals.summary.

Runs as its own process (`python -m runner.stages.evaluate RUN_DIR`), so torch is imported only here.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.evals import base_cache, generate, models
from runner.evals.heldout import HeldOut, Loaded
from runner.evals.summary import base_to_tuned, summary_lines
from runner.evals.settings import EvalSettings
from runner.records import write_text
from runner.stages import boot, python_module



def command(run_dir: Path, config: dict[str, Any], standby: bool = False) -> list[str]:
    """standby: the process imports what the stage needs, then waits for `go` on stdin (logged.Standby)."""
    return python_module("runner.stages.evaluate", str(run_dir), *(["--standby"] if standby else []))


def evaluate_run(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Evaluate base and tuned; returns the `eval` record (also written to metrics.json)."""
    return Evaluation(Path(run_dir), config).finish()


class Evaluation:
    """One run's eval in two steps: `ahead` (optional) evaluates the base model while the train stage still
    runs, `finish` the tuned model once its weights exist, then writes the record."""

    def __init__(self, run_dir: Path, config: dict[str, Any]):
        self.run_dir, self.config = run_dir, config
        self.settings = EvalSettings.from_config(config)
        self.split = HeldOut.of(run_dir, config, self.settings.limit)
        self.engine = (generate.choose_engine(self.settings.engine, self.split.size)
                       if self.split.generates and not self.split.empty else None)
        self.results: dict[str, Any] = {}
        self.memory = Loaded()   # the base stays loaded for the tuned model when that is base + adapter
        self.waiting: list[Waiting] = []   # vLLM's generation, after every model's loss: its engine takes the GPU
        self.seconds = 0.0
        self.base_ahead = False

    def ahead(self, memory_bytes: int) -> None:
        """The base model's figures (and its weights loaded, for base + adapter) while the trainer runs on
        the same GPU, each batch within `memory_bytes` (ahead_memory)."""
        if self.split.empty or self.engine not in (None, "transformers"):
            return
        import torch

        started = time.monotonic()
        base = models.base_model(self.config)
        try:
            if self.settings.base:
                self._evaluate("base", base, memory_bytes)
                self.base_ahead = True
            if self.memory.ref is None and self._tuned_adapts(base):
                self.memory.load(base)
        except torch.cuda.OutOfMemoryError:   # the trainer took more than estimated: after it, as before
            print("eval: the GPU is too full beside the trainer; the base model waits for it", flush=True)
            self.results.pop("base", None)
            self.base_ahead = False
            self.memory.drop()
        generate.release()   # what the batches took goes back to the trainer
        self.seconds += time.monotonic() - started

    def finish(self) -> dict[str, Any]:
        from runner.runfolder import RunFolder

        started = time.monotonic()
        if self.split.empty:
            record = {"split": None, "n": 0, "note": "no held-out data: set dataset.test_path or val_set_size"}
            RunFolder(self.run_dir).update_metrics(eval=record)
            return record
        tuned = models.tuned_model(self.run_dir, self.config)   # no tuned weights: one line, before any work
        if self.settings.base and "base" not in self.results:
            self._evaluate("base", models.base_model(self.config))
        self._evaluate("tuned", tuned)
        self.memory.drop()
        if self.waiting:
            _generate_with_vllm(self.run_dir, self.waiting, self.results, self.split, self.settings)
        self.seconds += time.monotonic() - started
        record = {"split": self.split.name, "n": self.split.size, "engine": self.engine,
                  **{v: self.results[v] for v in ("base", "tuned") if v in self.results},
                  "seconds": round(self.seconds, 1)}
        if (gains := base_to_tuned(self.run_dir)):
            record["gains"] = gains
        if self.base_ahead:
            record["base_ahead"] = True   # the base's figures came while the train stage ran
        if self.split.generates:
            record["max_new_tokens"] = self.settings.max_new_tokens
        RunFolder(self.run_dir).update_metrics(eval=record, summary_lines=summary_lines(record))
        return record

    def _evaluate(self, variant: str, ref: generate.ModelRef, memory_bytes: int | None = None) -> None:
        print(f"eval: {variant} model {ref.describe()}", flush=True)
        cache = base_cache.base_cache(self.config, ref, self.split, self.settings, self.engine) if variant == "base" else None
        if cache is not None and (cached := base_cache.cached_base(self.run_dir, cache)) is not None:
            self.results[variant] = cached
            base_cache.record_figures(self.run_dir, variant, cached, None)
            return
        self.results[variant], prompt_ids = _evaluate_model(self.run_dir, variant, ref, self.split, self.settings,
                                                            self.engine, self.memory, memory_bytes)
        if prompt_ids is None:
            base_cache.record_figures(self.run_dir, variant, self.results[variant], cache)
        else:
            self.waiting.append(Waiting(variant, ref, prompt_ids, cache))

    def _tuned_adapts(self, base: generate.ModelRef) -> bool:
        """The tuned model will be this base + the run's adapter (no merge stage writes a merged model)."""
        return bool(self.config.get("adapter")) and not (self.config.get("stages") or {}).get("merge", False)


# Of the card's memory, what the trainer's estimate (runner/memory.py) and the eval's base weights together
# may claim before the base is evaluated ahead: the estimate errs high, and what is left is margin.
AHEAD_SHARE = 0.85
AHEAD_MIN_GIB = 1.0


def ahead_memory(config: dict[str, Any]) -> int | None:
    """GPU bytes the base model's evaluation may use beside its weights while the train stage runs on the
    same GPU, or None when it has to wait for the trainer to end: on a CPU (it would take the trainer's
    cores), with vLLM (its engine claims a fixed share of the GPU), or when the memory model leaves too
    little room beside the trainer's estimated peak (a 7B on an 80 GB card)."""
    from runner import memory

    try:
        import torch

        if not torch.cuda.is_available():
            return None
        total = torch.cuda.get_device_properties(0).total_memory
        trainer = memory.estimate(config).total * memory.GIB
        weights = float(config["model_spec"]["params_b"]) * 1e9 * 2   # the eval loads 16-bit weights
    except Exception:  # noqa: BLE001 - no estimate, no overlap: the eval waits as it always did
        return None
    spare = total * AHEAD_SHARE - trainer - weights - memory.CUDA_OVERHEAD_GIB * memory.GIB
    return int(spare) if spare >= AHEAD_MIN_GIB * memory.GIB else None


@dataclass
class Waiting:
    """A model whose answers vLLM is still to generate."""

    variant: str
    ref: generate.ModelRef
    prompt_ids: list[list[int]]
    cache: Path | None   # the base's eval cache entry, to fill once its figures are whole


def _evaluate_model(run_dir: Path, variant: str, ref: generate.ModelRef, split: HeldOut, settings: EvalSettings,
                    engine_name: str | None, memory: Loaded,
                    memory_bytes: int | None = None) -> tuple[dict[str, Any], list[list[int]] | None]:
    """Loss and perplexity; with transformers also the answers and their scores. With vLLM, the prompt ids
    are returned for `_generate_with_vllm` (None when nothing is left to do)."""
    from runner.evals.loss import mean_token_loss

    started = time.monotonic()
    model, tokenizer = memory.load(ref)
    loaded = time.monotonic()
    examples = split.examples(tokenizer)
    figures: dict[str, Any] = mean_token_loss(model, examples, tokenizer.pad_token_id, settings.batch_size,
                                              memory_bytes)
    write_text(run_dir / "eval" / f"losses-{variant}.json", json.dumps(figures.pop("per_example")))
    figures["loss_n"] = len(examples)
    # where the stage's time goes, per model (generation and scoring add theirs)
    figures["phase_s"] = {"load": round(loaded - started, 2), "loss": round(time.monotonic() - loaded, 2)}
    if not split.generates or engine_name is None:
        return figures, None
    gen = dataclasses.replace(settings.generation("sqlqa"), memory_bytes=memory_bytes)
    prompt_ids = split.prompt_ids(tokenizer)
    if engine_name != "transformers":
        return figures, prompt_ids
    engine = generate.TransformersEngine(model, tokenizer, gen)
    del model
    try:
        _generate(run_dir, variant, engine, prompt_ids, figures, split, settings)
    finally:
        engine.close()
    return figures, None


def _generate(run_dir: Path, variant: str, engine: generate.Engine, prompt_ids: list[list[int]],
              figures: dict[str, Any], split: HeldOut, settings: EvalSettings, **options: Any) -> None:
    """The model's answers, timed and scored, into `figures`."""
    tokens, started = engine.generated_tokens, time.monotonic()
    predictions = engine.generate(prompt_ids, **options)
    seconds, tokens = time.monotonic() - started, engine.generated_tokens - tokens
    figures.update(generate_s=round(seconds, 1), generated_tokens=tokens,
                   generate_tok_s=round(tokens / seconds, 1) if seconds > 0 else None)
    started = time.monotonic()
    figures.update(_score(run_dir, variant, split.records, predictions, settings))
    figures.setdefault("phase_s", {})["score"] = round(time.monotonic() - started, 2)


def _generate_with_vllm(run_dir: Path, waiting: list[Waiting], results: dict[str, Any], split: HeldOut,
                        settings: EvalSettings) -> None:
    """One vLLM engine for base and tuned when the tuned model is base + adapter (requests without the
    LoRA are the base's): one engine start instead of two. Otherwise one engine per model, in turn."""
    gen = settings.generation("sqlqa")
    refs = [w.ref for w in waiting]
    shared = len(waiting) == 2 and generate.adapts(refs[1], refs[0])
    engine = generate.open_engine("vllm", refs[-1], gen) if shared else None
    try:
        for item in waiting:
            own = engine or generate.open_engine("vllm", item.ref, gen)
            try:
                _generate(run_dir, item.variant, own, item.prompt_ids, results[item.variant], split, settings,
                          adapter=bool(item.ref.adapter))
            finally:
                if own is not engine:
                    own.close()
            base_cache.record_figures(run_dir, item.variant, results[item.variant], item.cache)
    finally:
        if engine is not None:
            engine.close()


def _score(run_dir: Path, variant: str, records: list[dict], predictions: list[str],
           settings: EvalSettings) -> dict[str, Any]:
    """Exact match and execution accuracy; the predictions are kept for `python -m runner.evals.sql`."""
    from runner.evals.sql import score_records

    scored = [{**r, "prediction": p} for r, p in zip(records, predictions)]
    scores = score_records(scored, settings.sql_time_limit_s)
    write_text(Path(run_dir) / "eval" / f"predictions-{variant}.jsonl",
               "".join(json.dumps({**r, **one}, ensure_ascii=False) + "\n" for r, one in zip(scored, scores["per_record"])))
    return {key: scores[key] for key in ("exact_match", "execution_accuracy", "invalid_predictions", "gold_errors", "no_query")}


def warm_up(config: dict[str, Any]) -> None:
    """The stage's slow start-up, done ahead: torch, transformers and peft, and the base model's
    modeling code (resolved from its config, as loading it will)."""
    import peft  # noqa: F401 - imports transformers and torch
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401

    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(str(config["base_model"])))]
    except Exception:  # noqa: BLE001 - only a head start: the stage itself reports what is wrong
        pass


def main(run_dir: str, *flags: str, hide_unused: bool = False) -> int:
    from runner.runfolder import RunFolder

    folder = RunFolder(Path(run_dir))
    config = folder.composed()
    if hide_unused:   # the stage's own process only: the patches are process-wide
        boot.prepare_imports(config)   # before torch and transformers are imported
    try:
        evaluation = Evaluation(folder.path, config)
        if "--standby" in flags:
            warm_up(config)
            if (budget := ahead_memory(config)) is not None:
                evaluation.ahead(budget)
            if sys.stdin.readline().strip() != "go":   # the pipeline discarded it: the train stage did not succeed
                return 0
        record = evaluation.finish()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if record.get("note"):
        print(f"eval: nothing to evaluate ({record['note']})")
        return 0
    print("\n".join(f"{label:<12}{value}" for label, value in summary_lines(record)))
    print(f"eval: {record['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:], hide_unused=True))
