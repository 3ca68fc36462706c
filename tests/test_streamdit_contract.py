"""The shared contract suite on the StreamDiT generator, run directly (it is not registered yet; once it is,
test_contract.py runs the same cases from contract_streamdit.py and this file can go)."""

from __future__ import annotations

import contract
import pytest
import torch
from contract import Workspace
from contract_streamdit import cases
from contract_t2v import contract_params

from pipelines.streamdit import StreamDiTGenerator
from streamrt import registry


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("contract-sd"))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    torch.set_num_threads(1)
    if "streamdit" not in registry.available():
        monkeypatch.setitem(registry._BUILTIN, "streamdit", "pipelines.streamdit:StreamDiTGenerator")


@pytest.mark.parametrize(("check", "case"), contract_params(cases(), StreamDiTGenerator))
def test_contract(check, case, workspace):
    check(case, workspace)


def test_cases_are_complete():
    assert {c.generator for c in cases()} == {"streamdit"}
    assert contract.check_bounded_memory in [
        p.values[0] for p in contract_params(cases(), StreamDiTGenerator)
    ]
