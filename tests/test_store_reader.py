"""Reading a run directory without the writer's lock: during a live run, on read-only media, at awkward paths;
constant-memory missing indices."""

import itertools
import json
import os
import tracemalloc

import pytest

from pyscatter import cli
from pyscatter.analysis.curves import load_results
from pyscatter.analysis.finalstate import scattered_molecules
from pyscatter.conditions import RunSpec
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.store import RunReader, RunStore, StoreError

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1)
D, S, F = Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.FAILED


def _results(pairs):
    return [TrajectoryResult(i, o, 10.0, 0.0, 0.0, 0.5, 1.0, 0.2, 0.6, failure="x" if o is F else "") for i, o in pairs]


def _snapshot(directory):
    """Every entry under ``directory`` with its size and mtime (ns)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files + ["."]:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), directory)] = (st.st_size, st.st_mtime_ns)
    return out


def test_a_live_run_is_read_while_the_writer_holds_the_lock(tmp_path, capsys):
    with RunStore(tmp_path, SPEC, {"model_identity": "x"}) as writer:
        cid = writer.condition_id(0.5)
        writer.set_target(cid, 10)
        writer.add(cid, _results([(0, D), (1, S), (2, D)]), force_calls=30, wall_time_s=2.0)
        writer.add(cid, _results([(3, F)]), force_calls=10, wall_time_s=1.0)
        with pytest.raises(StoreError, match="in use"):
            RunStore(tmp_path, SPEC, {})  # the lock is really held
        with RunReader(tmp_path) as reader:
            assert reader.counts(reader.condition_id(0.5)).n_trajectories == 4
            writer.add(cid, _results([(5, D)]), force_calls=10, wall_time_s=1.0)  # a reader does not block commits
            assert reader.done_indices(cid) == {0, 1, 2, 3, 5}  # and sees them
            assert reader.spec == SPEC and reader.target(cid) == 10
        row = load_results(tmp_path).table.iloc[0]
        assert (row.n, row.n_dissociated, row.n_scattered, row.n_failed) == (4, 2, 1, 1)  # complete prefix 0..3
        assert len(scattered_molecules(tmp_path)) == 1
        assert cli.main(["status", str(tmp_path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        # 5 done of 10 in 4 s: 5 more at 0.8 s each; P_stick over the complete prefix 0..3: 2 of the 3 not failed
        assert (status["n_done"], status["n_failed"], status["target"], status["n"]) == (5, 1, 10, 4)
        assert status["eta_s"] == pytest.approx(4.0) and status["p_stick"] == pytest.approx(2 / 3)
        assert (status["force_calls"], status["wall_time_s"]) == (50, 4.0)
        assert cli.main(["status", str(tmp_path)]) == 0
        assert "5/10" in capsys.readouterr().out
    assert cli.main(["status", str(tmp_path / "nothing")]) == 2
    assert "not a pyscatter run directory" in capsys.readouterr().err


def test_status_without_a_target_has_no_eta(tmp_path, capsys):
    with RunStore(tmp_path, SPEC, {}) as writer:
        writer.add(writer.condition_id(0.3), _results([(0, D)]), 1, 1.0)
    assert cli.main(["status", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["eta_s"] is None and status["target"] is None and status["collision_energy"] == 0.3


def test_a_read_only_directory_is_read_and_left_untouched(tmp_path):
    run = tmp_path / "archive"
    with RunStore(run, SPEC, {"model_identity": "x"}) as writer:
        writer.add(writer.condition_id(0.5), _results([(0, D), (1, S)]), 2, 0.5)
    before = _snapshot(run)
    files = [run / name for name in os.listdir(run)]
    for path in files:
        path.chmod(0o444)
    run.chmod(0o555)
    try:
        if os.geteuid() != 0:  # permissions are enforced: the writer cannot open it
            with pytest.raises(StoreError):
                RunStore(run, SPEC, {})
        with RunReader(run) as reader:
            assert reader.counts(reader.condition_id(0.5)).n_dissociated == 1
        assert load_results(run).table.n.tolist() == [2]
        assert len(scattered_molecules(run)) == 1
        assert cli.main(["status", str(run)]) == 0
    finally:
        run.chmod(0o755)
        for path in files:
            path.chmod(0o644)
    assert _snapshot(run) == before  # nothing created (no -wal, -shm), nothing modified


@pytest.mark.parametrize("live", [False, True])
def test_a_path_with_uri_characters_works_and_creates_nothing_elsewhere(tmp_path, monkeypatch, live):
    monkeypatch.chdir(tmp_path)  # a stray relative file would land here
    run = tmp_path / "a #1?mode=rw&x=%20 b%"
    writer = RunStore(run, SPEC, {})
    writer.add(writer.condition_id(0.5), _results([(0, D), (1, D), (2, S)]), 3, 0.1)
    if not live:
        writer.close()
    try:
        assert load_results(run).table.n_dissociated.tolist() == [2]
        with RunReader(run) as reader:
            assert reader.done_indices(reader.condition_id(0.5)) == {0, 1, 2}
    finally:
        writer.close()
    assert os.listdir(tmp_path) == [run.name]
    assert not list((tmp_path.parent).glob("a *"))


@pytest.mark.parametrize("page", [2, 65536])
def test_missing_indices_are_the_gaps_in_order(tmp_path, monkeypatch, page):
    monkeypatch.setattr("pyscatter.store._PAGE", page)
    stored = [0, 1, 2, 5, 7, 8, 9, 10, 14]
    with RunStore(tmp_path, SPEC, {}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, _results((i, D) for i in stored), 1, 0.1)
        other = store.condition_id(0.6)
        store.add(other, _results([(3, D)]), 1, 0.1)
        for n in (0, 1, 3, 6, 11, 15, 20):
            assert list(store.missing_indices(cid, n)) == sorted(set(range(n)) - set(stored)), n
            assert store.count_done(cid, n) == len([i for i in stored if i < n]), n
        assert list(itertools.islice(store.missing_indices(cid, 10**12), 5)) == [3, 4, 6, 11, 12]
        # consumed while its yielded indices are committed, as a run does
        seen = []
        for index in store.missing_indices(cid, 30):
            seen.append(index)
            store.add(cid, _results([(index, S)]), 1, 0.1)
        assert seen == sorted(set(range(30)) - set(stored))
        assert list(store.missing_indices(cid, 30)) == [] and store.count_done(cid, 30) == 30


def test_missing_indices_of_a_huge_target_take_constant_memory(tmp_path):
    with RunStore(tmp_path, SPEC, {}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, _results((i, D) for i in range(0, 2000, 2)), 1, 0.1)
        tracemalloc.start()
        gaps = store.missing_indices(cid, 10**12)
        total = sum(1 for _ in itertools.islice(gaps, 300_000))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert total == 300_000 and peak < 2_000_000  # a set of 10**12 indices would not fit anywhere
