"""Scenario name (LoadGen's word) -> SUT class: the one place a scenario is dispatched on."""

from __future__ import annotations

from common.names import lookup
from sut.base import SUT
from sut.offline import OfflineSUT
from sut.server import ServerSUT
from sut.single_stream import SingleStreamSUT

SUTS: dict[str, type[SUT]] = {cls.scenario: cls for cls in (SingleStreamSUT, OfflineSUT, ServerSUT)}
SCENARIOS = tuple(SUTS)


def get_sut_class(scenario: str) -> type[SUT]:
    """The SUT class for `scenario`; ValueError naming the known scenarios otherwise."""
    return lookup("scenario", scenario, SUTS)
