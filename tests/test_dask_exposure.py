"""What a Dask run exposes: a local cluster listens on 127.0.0.1 only (scheduler, nannies, workers) and
serves no dashboard unless asked; an unreachable scheduler fails within --connect-timeout in one line."""

import time

import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

from pyscatter.cli.main import main
from pyscatter.workflows.dask import DaskExecutor

LOCAL = "127.0.0.1"


def _host(address: str) -> str:
    return address.split("://")[1].rsplit(":", 1)[0]


def _listening(process: psutil.Process) -> list[str]:
    """Local addresses of the TCP sockets ``process`` and its children listen on."""
    found = []
    for p in [process, *process.children(recursive=True)]:
        found += [c.laddr.ip for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    return found


def test_local_cluster_listens_on_localhost_only_and_has_no_dashboard():
    with DaskExecutor(n_workers=2) as executor:
        cluster = executor.cluster
        workers = executor.client.scheduler_info()["workers"]
        assert _host(cluster.scheduler_address) == LOCAL
        assert len(workers) == 2
        for address, info in workers.items():
            assert _host(address) == LOCAL
            assert _host(info["nanny"]) == LOCAL
        assert cluster.dashboard_link == ""
        addresses = _listening(psutil.Process())
        assert addresses and set(addresses) == {LOCAL}


def test_dashboard_only_when_asked_and_on_localhost():
    with DaskExecutor(n_workers=1, dashboard=True) as executor:
        assert executor.cluster.dashboard_link.startswith(f"http://{LOCAL}:")
        assert set(_listening(psutil.Process())) == {LOCAL}


def test_unreachable_scheduler_fails_within_the_connect_timeout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    code = main(["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--model", "emt",
                 "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "3"])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 3 + 5
    assert err.splitlines()[-1] == "pyscatter: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 3 s"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
