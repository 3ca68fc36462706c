"""The shared contract suite on the Rolling Forcing generator, run directly (it is not registered yet; once it is,
test_contract.py runs the same cases from contract_rolling_forcing.py and this file can go)."""

from __future__ import annotations

import contract
import pytest
import torch
from contract import Workspace
from contract_rolling_forcing import cases
from contract_t2v import contract_params

from pipelines.rolling_forcing import RollingForcingGenerator
from streamrt import registry


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("contract-rf"))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    torch.set_num_threads(1)
    if "rolling-forcing" not in registry.available():
        monkeypatch.setitem(
            registry._BUILTIN, "rolling-forcing", "pipelines.rolling_forcing:RollingForcingGenerator"
        )


@pytest.mark.parametrize(("check", "case"), contract_params(cases(), RollingForcingGenerator))
def test_contract(check, case, workspace):
    check(case, workspace)


def test_cases_are_complete():
    assert {c.generator for c in cases()} == {"rolling-forcing"}
    assert contract.check_bounded_memory in [
        p.values[0] for p in contract_params(cases(), RollingForcingGenerator)
    ]
