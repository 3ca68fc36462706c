"""GeneratorSpec.cpu_threads: render runs a generator with the thread count it asks for, unless the user chose one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.binauralflow.generator import BinauralFlowGenerator
from streamrt.threads import preferred_cpu_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_preferred_count_holds_inside_and_is_restored(two_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = BinauralFlowGenerator.spec
    assert spec.cpu_threads == 1 and spec.describe()["cpu_threads"] == 1
    with preferred_cpu_threads(spec, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), preferred_cpu_threads(spec, "cpu"):
        raise RuntimeError("a failed render restores the count too")
    assert torch.get_num_threads() == 2


def test_the_user_s_choice_a_gpu_or_no_preference_leave_the_count_alone(two_threads, monkeypatch):
    spec = BinauralFlowGenerator.spec
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with preferred_cpu_threads(spec, "cpu"):
        assert torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    with preferred_cpu_threads(spec, "cuda"):
        assert torch.get_num_threads() == 2
    with preferred_cpu_threads(dataclasses.replace(spec, cpu_threads=None), "cpu"):
        assert torch.get_num_threads() == 2
