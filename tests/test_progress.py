"""The stage's one progress line follows the trainer's bar, not the data work before it or the evals inside it."""

import io

from runner.progress import StageProgress


def fed(lines: list[str]) -> str:
    stream = io.StringIO()
    progress = StageProgress("train", stream)
    for line in lines:
        progress.feed(line)
    return progress.line()


def test_a_train_stage_that_tokenises_first_shows_the_data_work_then_the_trainer_steps():
    tokenising = ["Tokenizing Prompts:   0%|          | 0/3000 [00:00<?, ? examples/s]",
                  "Tokenizing Prompts: 100%|██████████| 3000/3000 [00:01<00:00, 2000 examples/s]"]
    assert "3000/3000" in fed(tokenising)
    steps = ["  2%|▏         | 6/375 [00:02<01:38,  3.73it/s]",
             " 85%|████████▍ | 11/13 [00:00<00:00, 13.13it/s]",                 # an in-training eval
             "Saving the dataset (1/1 shards): 100%|██████████| 9/9 [00:00<00:00]",
             " 55%|█████▌    | 207/375 [00:44<00:29,  5.63it/s]"]
    line = fed([*tokenising, *steps])
    assert "207/375" in line and "(eta 00:29)" in line
    assert "6/375" in fed([*tokenising, *steps[:3]])   # neither the eval's bar nor a named one replaces it


def test_before_training_the_largest_data_bar_shows():
    assert "0/9" not in fed(["Loading weights: 100%|██████████| 291/291 [00:00<00:00]",
                             "Saving the dataset (0/1 shards):   0%|          | 0/9 [00:00<?, ?]"])
