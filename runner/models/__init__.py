"""Base models: what one is (spec: figures from config.json; modules: LoRA targets; tokenizer checks), where it
comes from (hub downloads), and the models the runner builds or converts itself (tiny, gguf, smollm2)."""
