"""A worker process leaves what it loaded at startup out of later garbage collections, and
collects less often than the default."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mcsync import workers


@pytest.fixture
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_objects_loaded_at_startup_are_left_out_of_later_collections(unfrozen: None) -> None:
    loaded_at_startup: list[object] = [object()]
    loaded_at_startup.append(loaded_at_startup)  # a cycle: the collector would walk it

    workers.tune_garbage_collection()

    assert gc.get_freeze_count() > 0
    tracked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
    assert id(loaded_at_startup) not in tracked
    made_later: list[object] = []
    made_later.append(made_later)
    assert any(o is made_later for o in gc.get_objects(0))


def test_the_collector_runs_less_often_than_by_default(unfrozen: None) -> None:
    workers.tune_garbage_collection()

    assert gc.get_threshold() == workers.GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700
