"""Run ids sort by creation time; records are replaced atomically."""

import json
import os

import pytest

from runner import records
from runner.runfolder import new_run_id


def test_run_ids_are_unique_and_sort_by_time():
    ids = [new_run_id({"model": "tiny", "adapter": "lora"}) for _ in range(2000)]  # a big sweep, one second
    assert len(set(ids)) == len(ids)
    assert all(i.split("-")[:2] == ids[0].split("-")[:2] or i > ids[0] for i in ids)
    assert new_run_id({"model": "mistral", "adapter": None}, run_name="my run/1").endswith("-my-run-1")


def test_write_json_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "status.json"
    records.write_json(path, {"state": "running"})
    records.write_json(path, {"state": "succeeded"})
    assert json.loads(path.read_text()) == {"state": "succeeded"}
    assert os.listdir(tmp_path) == ["status.json"]


def test_a_failed_write_keeps_the_old_record(tmp_path):
    path = tmp_path / "metrics.json"
    records.write_json(path, {"loss": 1.0})
    with pytest.raises(TypeError):
        records.write_text(path, object())  # not text: the write fails midway
    assert json.loads(path.read_text()) == {"loss": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]
