"""axolotl plugins the runner adds to every train stage (start-up work cut, graceful stop, no last evaluation
when the eval stage scores the end, packing, RoPE, varlen): each one a module, listed in the planned config."""
