"""The Arrow memory pool of the bulk table work (``inat_hf.metadata.pool``): switched for the block only."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from inat_hf.metadata import pool


def test_bulk_allocations_use_the_system_pool_and_restore_the_default(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    monkeypatch.delenv(pool.POOL_ENV, raising=False)
    before = pa.default_memory_pool().backend_name
    with pool.bulk_allocations():
        assert pa.default_memory_pool().backend_name == "system"
        with pool.bulk_allocations():  # nested: still switched
            assert pa.default_memory_pool().backend_name == "system"
        assert pa.default_memory_pool().backend_name == "system"
        table = pa.table({"x": pa.array(range(1000))}).take(pa.array([3, 1]))
    assert pa.default_memory_pool().backend_name == before
    assert table["x"].to_pylist() == [3, 1]  # a buffer outlives the block: it keeps its pool


def test_bulk_allocations_restore_the_default_after_an_error(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool().backend_name
    with pytest.raises(RuntimeError), pool.bulk_allocations():
        raise RuntimeError("boom")
    assert pa.default_memory_pool().backend_name == before


def test_concurrent_blocks_restore_the_default_once_the_last_ends(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool().backend_name
    inside, release = threading.Barrier(3), threading.Event()
    seen = []

    def work():
        with pool.bulk_allocations():
            inside.wait()
            release.wait()
            seen.append(pa.default_memory_pool().backend_name)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()
    release.set()
    for thread in threads:
        thread.join()
    assert seen == ["system", "system"]
    assert pa.default_memory_pool().backend_name == before


@pytest.mark.parametrize("env", [{"INAT_FL_ARROW_POOL": "default"}, {"ARROW_DEFAULT_MEMORY_POOL": "system"}])
def test_a_chosen_pool_is_left_alone(monkeypatch, env):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert pool.bulk_pool() is None
    before = pa.default_memory_pool()
    with pool.bulk_allocations():
        assert pa.default_memory_pool().backend_name == before.backend_name


def test_an_unknown_choice_names_the_variable(monkeypatch):
    monkeypatch.setenv(pool.POOL_ENV, "tcmalloc")
    with pytest.raises(ValueError, match="INAT_FL_ARROW_POOL='tcmalloc'; choose from system, default"):
        pool.bulk_pool()
