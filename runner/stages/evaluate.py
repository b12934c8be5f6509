"""eval: the base and the tuned model on the same held-out split, with the same prompts, greedy.

For text-to-SQL data (dataset.format sqlqa) both models answer every held-out question; the answers are
scored for normalised exact match and execution accuracy (runner.evals.sql, the same code as
`python -m runner.evals.sql`) and saved to eval/predictions-{base,tuned}.jsonl. For every format the eval
loss and perplexity of both models on the held-out split are measured. Results go to metrics.json:

    eval:          {split, n, engine, seconds, base: {...}, tuned: {...}}
    summary_lines: [[label, "base → tuned"], ...]   (printed by the run summary)

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
from runner.evals import bootstrap, generate, models
from runner.evals.prompts import PromptTemplate, read_jsonl, tokenize_example, training_type
from runner.evals.settings import EvalSettings
from runner.records import write_text
from runner.stages import python_module, unused_packages

# metric key → summary label and digits, in the order the summary prints them (the run summary already
# shows the trainer's eval loss; labels fit its 12-character column)
SUMMARY = {"execution_accuracy": ("exec acc", 3), "exact_match": ("exact match", 3), "perplexity": ("perplexity", 2)}
# what the base's figures rest on, per record, kept with them in the sweep's eval cache
PER_RECORD_FILES = ("predictions-base.jsonl", "losses-base.json")


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
        cache = _base_cache(self.config, ref, self.split, self.settings, self.engine) if variant == "base" else None
        if cache is not None and (cached := _cached_base(self.run_dir, cache)) is not None:
            self.results[variant] = cached
            _finish(self.run_dir, variant, cached, None)
            return
        self.results[variant], prompt_ids = _evaluate_model(self.run_dir, variant, ref, self.split, self.settings,
                                                            self.engine, self.memory, memory_bytes)
        if prompt_ids is None:
            _finish(self.run_dir, variant, self.results[variant], cache)
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


def _base_cache(config: dict[str, Any], ref: generate.ModelRef, split: HeldOut, settings: EvalSettings,
                engine: str | None) -> Path:
    """The base model scores the same for every job of a sweep: once, then from <runs_root>/_eval_cache."""
    from runner.cache import base_eval_key, digest, eval_cache_dir

    return eval_cache_dir(config, base_eval_key(config, ref, engine, settings, digest([split.name, split.records])))


def _cached_base(run_dir: Path, cache: Path) -> dict[str, Any] | None:
    import shutil

    from runner.records import read_json

    if not (cache / "figures.json").is_file():
        return None
    figures = read_json(cache / "figures.json")
    for name in PER_RECORD_FILES:
        if (cache / name).is_file():
            (run_dir / "eval").mkdir(parents=True, exist_ok=True)
            shutil.copy(cache / name, run_dir / "eval" / name)
    print(f"eval: base figures reused from run {figures.get('cached_from')} ({cache})", flush=True)
    return figures


def _finish(run_dir: Path, variant: str, figures: dict[str, Any], cache: Path | None) -> None:
    """Print a model's figures; the base's also go to the eval cache for the sweep's other jobs."""
    import shutil

    from runner.records import write_json

    print(f"eval: {variant} " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    if cache is None:
        return
    staging = cache.with_name(cache.name + f".{run_dir.name}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in PER_RECORD_FILES:
        if (run_dir / "eval" / name).is_file():
            shutil.copy(run_dir / "eval" / name, staging / name)
    write_json(staging / "figures.json", {**figures, "cached_from": run_dir.name})
    try:
        staging.rename(cache)   # another job may have put it there first: then theirs stays
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class HeldOut:
    """The held-out split: the dataset's test file (tokenized here for each model, with the training
    template), or else axolotl's own tokenized eval split (other formats, val_set_size hold-outs)."""

    config: dict[str, Any]
    config_file: Path
    records: list[dict[str, Any]]
    template: PromptTemplate | None
    limit: int | None
    _axolotl: list | None = None

    @classmethod
    def of(cls, run_dir: Path, config: dict[str, Any], limit: int | None) -> HeldOut:
        dataset = config.get("dataset") or {}
        records = read_jsonl(dataset["test_path"], limit) if dataset.get("test_path") else []
        template = PromptTemplate.from_config(config) if isinstance(training_type(config), dict) else None
        if dataset.get("format") == "sqlqa" and template is None:
            raise UserError("eval: sqlqa data needs a prompt format dict in datasets[0].type")
        return cls(config, run_dir / "config.yml", records, template, limit)

    @property
    def generates(self) -> bool:
        """Text-to-SQL answers are generated and scored; other data gets loss and perplexity only."""
        return (self.config.get("dataset") or {}).get("format") == "sqlqa" and bool(self.records)

    @property
    def empty(self) -> bool:
        return not self.records and not self.config.get("val_set_size") and not self.config.get("test_datasets")

    @property
    def name(self) -> str:
        return "test" if self.records else "val"

    @property
    def size(self) -> int:
        return len(self.records) if self.records else len(self._axolotl or [])

    def prompt_ids(self, tokenizer: Any) -> list[list[int]]:
        """The generation prompts of the test records, tokenised as in training (BOS included)."""
        assert self.template is not None
        return [list(tokenizer(self.template.prompt(r))["input_ids"]) for r in self.records]

    def examples(self, tokenizer: Any) -> list:
        if self.template is not None and self.records:
            sequence_len = int(self.config.get("sequence_len") or 2048)
            on_inputs = bool(self.config.get("train_on_inputs"))
            return [tokenize_example(tokenizer, self.template, r, sequence_len, on_inputs) for r in self.records]
        if self._axolotl is None:
            from runner.evals.loss import axolotl_eval_examples

            self._axolotl = axolotl_eval_examples(self.config_file, self.limit)
        return self._axolotl


class Loaded:
    """The model the stage holds in memory, and which weights it is."""

    def __init__(self) -> None:
        self.ref: generate.ModelRef | None = None
        self.model: Any = None

    def load(self, ref: generate.ModelRef) -> tuple[Any, Any]:
        if generate.adapts(ref, self.ref):   # base + adapter over the base in memory: merged in place
            model, tokenizer = generate.merge_adapter(self.model, str(ref.adapter)), generate.load_tokenizer(ref)
        else:
            self.drop()   # free the GPU before the next weights arrive
            model, tokenizer = generate.load_model(ref)
        self.ref, self.model = ref, model
        return model, tokenizer

    def drop(self) -> None:
        if self.ref is not None:
            self.ref = self.model = None
            generate.release()


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
            _finish(run_dir, item.variant, results[item.variant], item.cache)
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
    return {key: scores[key] for key in ("exact_match", "execution_accuracy", "invalid_predictions", "gold_errors")}


def summary_lines(record: dict[str, Any]) -> list[list[str]]:
    """(label, "base → tuned") pairs for the run summary; tuned alone when the base was not evaluated."""
    base, tuned = record.get("base") or {}, record.get("tuned") or {}
    lines = []
    for key, (label, digits) in SUMMARY.items():
        if not isinstance(tuned.get(key), (int, float)):
            continue
        if isinstance(base.get(key), (int, float)):
            gain = (record.get("gains") or {}).get(key)
            interval = f"; {bootstrap.describe(gain, digits)}" if gain else ""
            lines.append([label, f"{base[key]:.{digits}f} → {tuned[key]:.{digits}f}  (base → tuned{interval})"])
        else:
            lines.append([label, f"{tuned[key]:.{digits}f}  (tuned)"])
    if lines:
        lines.append(["eval split", f"{record['split']}, {record['n']} records"
                      + (f", {record['engine']} greedy" if record.get("engine") else "")])
    return lines


def base_to_tuned(run_dir: Path) -> dict[str, dict]:
    """Each base → tuned figure's gain with its 95 % interval (a paired bootstrap over the held-out
    records), from the per-record files both models left in eval/; {} where the base was not evaluated."""
    from runner.records import read_json

    folder, gains = Path(run_dir) / "eval", {}
    if all((folder / f"losses-{v}.json").is_file() for v in ("base", "tuned")):
        gains.update(bootstrap.loss_gain(read_json(folder / "losses-base.json"),
                                         read_json(folder / "losses-tuned.json")) or {})
    answers = [folder / f"predictions-{v}.jsonl" for v in ("base", "tuned")]
    if all(path.is_file() for path in answers):
        base, tuned = ([json.loads(line) for line in path.read_text().splitlines() if line.strip()] for path in answers)
        if len(base) == len(tuned) and all("execution" in r for r in base + tuned):
            for key, field in (("execution_accuracy", "execution"), ("exact_match", "exact")):
                if (gain := bootstrap.accuracy_gain([r[field] for r in base], [r[field] for r in tuned])):
                    gains[key] = gain
    return gains


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


def main(run_dir: str, *flags: str) -> int:
    from runner.runfolder import RunFolder

    folder = RunFolder(Path(run_dir))
    config = folder.composed()
    unused_packages.hide_unused(config)   # before torch and transformers are imported
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
    sys.exit(main(*sys.argv[1:]))
