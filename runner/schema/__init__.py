"""The runner's typed config: one dataclass per node that OmegaConf enforces at composition, value ranges checked
before dispatch, and axolotl's own key list (axolotl_keys.json) that a typo is matched against."""
