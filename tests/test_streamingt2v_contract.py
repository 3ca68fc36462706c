"""The shared contract suite on the StreamingT2V generator, run directly (it is not registered yet; once it is,
test_contract.py runs the same cases from contract_streamingt2v.py and this file can go)."""

from __future__ import annotations

import contract
import pytest
import torch
from contract import Workspace
from contract_streamingt2v import cases
from contract_t2v import contract_params

from pipelines.streamingt2v import StreamingT2VGenerator
from streamrt import registry


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("contract-st"))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    torch.set_num_threads(1)
    if "streamingt2v" not in registry.available():
        monkeypatch.setitem(registry._BUILTIN, "streamingt2v", "pipelines.streamingt2v:StreamingT2VGenerator")


@pytest.mark.parametrize(("check", "case"), contract_params(cases(), StreamingT2VGenerator))
def test_contract(check, case, workspace):
    check(case, workspace)


def test_cases_are_complete():
    assert {c.generator for c in cases()} == {"streamingt2v"}
    assert contract.check_bounded_memory in [
        p.values[0] for p in contract_params(cases(), StreamingT2VGenerator)
    ]
