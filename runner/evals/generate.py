"""Greedy generation for eval and infer: vLLM when it is installed and a GPU is present (batched, paged),
otherwise transformers' batched `generate` on GPU or CPU.

Both engines take the same prompt token ids (from the model's Hugging Face tokenizer, BOS
included, as in training), decode greedily, stop at EOS or at the first stop string, and return the text
up to and including that stop string. torch, transformers and vllm are imported only when an engine is
opened, never when this module is imported.
"""

from __future__ import annotations

import gc
import importlib.util
import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from runner.errors import UserError, unknown
from runner.schema.evals import ENGINES   # one list for the schema and the engines


@dataclass(frozen=True)
class ModelRef:
    """A model to load: full weights at `path`, optionally with a LoRA adapter applied on top."""

    path: str
    adapter: str | None = None
    tokenizer: str | None = None    # default: the tokenizer saved with the weights

    def describe(self) -> str:
        return self.path + (f" + adapter {self.adapter}" if self.adapter else "")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    batch_size: int | None = None   # transformers only: prompts per generate() call (None: rows_that_fit)
    stop: tuple[str, ...] = ()      # besides EOS
    memory_bytes: int | None = None  # transformers: GPU memory a batch may take (None: half of what is free)


class Engine(Protocol):
    name: str
    tokenizer: Any
    generated_tokens: int   # new tokens decoded so far, EOS included: generation tokens/s in the eval figures

    def generate(self, prompt_ids: list[list[int]]) -> list[str]: ...

    def close(self) -> None: ...


# ---- which engine -------------------------------------------------------------------------------
def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


# `auto` takes vLLM from this many prompts per model on: below it, vLLM's engine start costs more than its
# faster decoding saves. On the lent H200 (bench/RESULTS.md §9, §11) the engine start with the LoRA
# enabled took 135-178 s (torch.compile, CUDA graphs), and generated the default 7B job's 200 answers in
# 7 s; transformers, one batch of 200, in 3-4 s: about 60 prompts a second, so vLLM's start is worth
# some 9 000 prompts of transformers' time before its decoding saves anything.
VLLM_MIN_PROMPTS = 10_000


def choose_engine(requested: str = "auto", prompts: int | None = None) -> str:
    """The engine to use: `auto` picks vLLM where it can run and the work is large enough to pay for its
    start (`prompts` per model, when known), transformers everywhere else."""
    if requested not in ENGINES:
        raise unknown("eval engine", requested, ENGINES)
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not vllm_available():
            raise UserError("engine vllm: vllm is not installed here (use engine=auto or engine=transformers)")
        if not gpu_available():
            raise UserError("engine vllm: no GPU here (use engine=auto or engine=transformers)")
        return "vllm"
    if prompts is not None and prompts < VLLM_MIN_PROMPTS:
        return "transformers"
    return "vllm" if vllm_available() and gpu_available() else "transformers"


def open_engine(name: str, ref: ModelRef, settings: GenerationSettings) -> Engine:
    if name == "vllm":
        return VllmEngine(ref, settings)
    model, tokenizer = load_model(ref)
    return TransformersEngine(model, tokenizer, settings)


# ---- shared pieces ------------------------------------------------------------------------------
def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """The text up to and including the earliest stop string (vLLM's include_stop_str_in_output)."""
    ends = [text.find(s) + len(s) for s in stops if s and s in text]
    return text[: min(ends)] if ends else text


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.tokenizer or ref.path)
    tokenizer.padding_side = "left"   # generation continues from the right end of every row
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: ModelRef) -> tuple[Any, Any]:
    """(model in eval mode on the best device, tokenizer). An adapter is merged in for speed."""
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    # bf16 on GPUs that have it; float32 on CPU, where it is the fast path for small models
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else (torch.float16 if cuda else torch.float32)
    # on a GPU the weights go straight from the files to the device: loading a 7B into host memory first
    # and moving it then took about three times as long
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=dtype, device_map="cuda" if cuda else None)
    if ref.adapter:
        model = merge_adapter(model, ref.adapter)   # on the weights' device
    return model.eval(), load_tokenizer(ref)


CPU_ROWS = 64   # rows per batch on a CPU, where a larger batch buys nothing


def attention_kernels() -> Any:
    """Context for the eval's batched forward passes: SDPA without cuDNN's attention. Padded batches carry
    an attention mask, for which torch picks cuDNN's kernel on Hopper, and cuDNN builds a graph for every
    new shape: each decoding step of the first generate call (its key length grows by one) paid a build.
    On an H200, 200 prompts, 64 new tokens: first call 14.3 s with cuDNN, 4.3 s without (second calls
    3.2 and 2.6 s; bench/RESULTS.md §11)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def rows_that_fit(model: Any, row_tokens: int, limit: int, logits: bool = False,
                  memory_bytes: int | None = None) -> int:
    """Rows of `row_tokens` tokens per batch for `model`: on a GPU as many as fit in half of its free memory
    (or in `memory_bytes`, when the eval shares the GPU with a trainer that is still growing), at most
    `limit`; CPU_ROWS on a CPU. A token costs its K and V in every layer and the MLP's activations,
    generously; `logits`: also logits over the vocabulary for every token (a loss batch; generation keeps
    the last position's only). On an H200 the default 7B job's 200 held-out prompts go in one batch:
    generation steps the whole batch at once, so fewer batches is fewer steps."""
    import torch

    if model.device.type != "cuda":
        return max(1, min(CPU_ROWS, limit))
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(config.hidden_size)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    per_token = (2 * int(config.num_hidden_layers) * kv_heads * head_dim * 2         # K and V, 2 bytes each
                 + 8 * int(getattr(config, "intermediate_size", None) or 4 * hidden)
                 + (12 * int(config.vocab_size) if logits else 0))                    # bf16 + float32 + softmax
    free, _ = torch.cuda.mem_get_info(model.device)
    available = free / 2 if memory_bytes is None else min(memory_bytes, free / 2)
    return max(1, min(limit, int(available / (per_token * max(1, row_tokens)))))


def adapts(ref: ModelRef, loaded: ModelRef | None) -> bool:
    """`ref` is the weights `loaded` stands for plus an adapter."""
    return bool(ref.adapter) and loaded is not None and not loaded.adapter and loaded.path == ref.path


def merge_adapter(model: Any, adapter: str) -> Any:
    """The adapter merged into `model`'s weights, in place and on its device (base + adapter → tuned
    without loading the base again)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


def release() -> None:
    """Free what dropped models held (call after the last reference is gone), so the next one fits on the GPU."""
    gc.collect()
    with suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- transformers -------------------------------------------------------------------------------
class TransformersEngine:
    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        eos_ids.add(tokenizer.eos_token_id)
        # A stop string that is one token stops like EOS; longer ones need transformers' stop_strings.
        self.stop_strings = []
        for stop in settings.stop:
            ids = tokenizer.encode(stop, add_special_tokens=False)
            if len(ids) == 1:
                eos_ids.add(ids[0])
            else:
                self.stop_strings.append(stop)
        self.eos_ids = sorted(i for i in eos_ids if i is not None)
        self.generated_tokens = 0

    def generate(self, prompt_ids: list[list[int]]) -> list[str]:
        import torch

        # longest first, so each batch pads little; results go back in the callers' order
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        texts: list[str] = [""] * len(prompt_ids)
        pad = self.tokenizer.pad_token_id
        extra = {"stop_strings": self.stop_strings, "tokenizer": self.tokenizer} if self.stop_strings else {}
        size = self.settings.batch_size or rows_that_fit(
            self.model, max((len(ids) for ids in prompt_ids), default=1) + self.settings.max_new_tokens, len(order),
            memory_bytes=self.settings.memory_bytes)
        for batch in _batches(order, max(1, size)):
            width = max(len(prompt_ids[i]) for i in batch)
            rows = [[pad] * (width - len(prompt_ids[i])) + list(prompt_ids[i]) for i in batch]
            mask = [[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch]
            device = self.model.device
            with torch.inference_mode(), attention_kernels():
                output = self.model.generate(
                    input_ids=torch.tensor(rows, device=device), attention_mask=torch.tensor(mask, device=device),
                    max_new_tokens=self.settings.max_new_tokens, do_sample=False, temperature=None, top_p=None,
                    top_k=None, eos_token_id=self.eos_ids, pad_token_id=pad, **extra,
                )
            for i, row in zip(batch, output[:, width:].tolist()):
                # a row stopped by a stop string is padded after it, as one stopped by EOS
                self.generated_tokens += _decoded_length(row, [*self.eos_ids, pad])
                texts[i] = cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), self.settings.stop)
        return texts

    def close(self) -> None:
        self.model = None
        release()


def _decoded_length(row: list[int], eos_ids: list[int]) -> int:
    """Tokens a row really decoded: up to its first EOS (included); what follows is padding."""
    return next((n + 1 for n, token in enumerate(row) if token in eos_ids), len(row))


# ---- vLLM ---------------------------------------------------------------------------------------
class VllmEngine:
    name = "vllm"

    def __init__(self, ref: ModelRef, settings: GenerationSettings):
        from vllm import LLM, SamplingParams

        self.settings = settings
        self.generated_tokens = 0
        self.tokenizer = load_tokenizer(ref)   # prompts are token ids from the same tokenizer as transformers'
        options: dict[str, Any] = {"model": ref.path, "tokenizer": ref.tokenizer or ref.path, "seed": 0}
        self.lora = None
        if ref.adapter:
            from vllm.lora.request import LoRARequest

            options.update(enable_lora=True, max_lora_rank=adapter_rank(ref.adapter))
            self.lora = LoRARequest("tuned", 1, ref.adapter)
        self.llm = LLM(**options)
        self.params = SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens, stop=list(settings.stop),
                                     include_stop_str_in_output=True, skip_special_tokens=True)

    def generate(self, prompt_ids: list[list[int]], adapter: bool = True) -> list[str]:
        """adapter=False: the base model alone, from an engine opened with the adapter (one start for both)."""
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids], self.params,
                                    use_tqdm=False, lora_request=self.lora if adapter else None)
        self.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return [cut_at_stop(o.outputs[0].text, self.settings.stop) for o in outputs]

    def close(self) -> None:
        with suppress(Exception):
            self.llm.llm_engine.engine_core.shutdown()   # vLLM's engine runs in its own process
        self.llm = None
        release()


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)   # the max_lora_rank values vLLM accepts


def adapter_rank(adapter: str) -> int:
    """The smallest max_lora_rank vLLM accepts that holds the adapter's rank."""
    rank = int(json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r") or 16)
    return next((size for size in VLLM_LORA_RANKS if size >= rank), rank)
