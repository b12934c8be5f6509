"""The eval stage's parts: held-out loss, generation (vLLM or transformers), SQL scoring by execution, paired
bootstrap intervals, and answering a run's model for `runner.infer` and `runner.serve`."""
