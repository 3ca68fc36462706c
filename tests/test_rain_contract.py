"""The shared contract suite against RAIN (until the generator is registered, when tests/test_contract.py picks
the cases up through FACTORIES and this file goes)."""

from __future__ import annotations

import contract
import pytest
import torch
from contract import CHECKS, Workspace, applies
from contract_rain import cases

from pipelines.rain import RainGenerator
from streamrt import registry

REGISTERED = "rain" in registry.available()
CASES = []
for case in cases():
    case.spec = RainGenerator.spec
    CASES.append(case)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("contract-rain"))


@pytest.mark.skipif(REGISTERED, reason="registered: tests/test_contract.py runs these cases")
@pytest.mark.parametrize(
    ("check", "case"),
    [
        pytest.param(check, case, id=f"{case.id}-{check.__name__.removeprefix('check_')}")
        for case in CASES
        for check in CHECKS
        if check is not contract.check_describe and applies(check, case)
    ],
)
def test_contract(check, case, workspace) -> None:
    torch.set_num_threads(1)
    check(case, workspace)
