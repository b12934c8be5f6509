"""Record the Python API of the locked vLLM that runner/evals/generate.py calls, for the tests' fake vLLM
(tests/test_eval_engine.py refuses any name this file does not list, as the real vLLM would).

    python bench/record_vllm_api.py VLLM_WHEEL tests/data/vllm-python-api.json

Reads the wheel's source with `ast` (vLLM needs a CUDA torch to import): the keyword options of `LLM(...)`
(its own parameters and, through **kwargs, every EngineArgs field), `LLM.generate`'s parameters, the fields
of SamplingParams and LoRARequest (in order: LoRARequest is built positionally), and TokensPrompt's keys.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _method_params(cls: ast.ClassDef, name: str) -> list[str]:
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)
    args = fn.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.arg != "self"]


def _fields(cls: ast.ClassDef) -> list[str]:
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


def record(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        def tree(path: str) -> ast.Module:
            return ast.parse(z.read(path).decode())

        llm = _class(tree("vllm/entrypoints/llm.py"), "LLM")
        return {
            "vllm": re.match(r"vllm-([^-]+)-", wheel.name).group(1),
            "LLM": sorted(set(_method_params(llm, "__init__")) | set(_fields(_class(tree("vllm/engine/arg_utils.py"),
                                                                                    "EngineArgs")))),
            "LLM.generate": _method_params(llm, "generate"),
            "SamplingParams": _fields(_class(tree("vllm/sampling_params.py"), "SamplingParams")),
            "LoRARequest": _fields(_class(tree("vllm/lora/request.py"), "LoRARequest")),
            "TokensPrompt": _fields(_class(tree("vllm/inputs/llm.py"), "TokensPrompt")),
        }


if __name__ == "__main__":
    wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_text(json.dumps(record(wheel), indent=1) + "\n")
    print(out)
