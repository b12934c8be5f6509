"""runner: config-as-code fine-tuning. Hydra composes conf/ into one job (compose, plan), backends run its stages
over a run folder (pipeline, stages/), and runs/ reads what came out; README "Layout" draws the layers."""
