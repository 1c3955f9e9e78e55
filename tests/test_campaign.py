"""``pyscatter campaign``: the TOML grid, the run directories of ``pyscatter run``, resume, the summary."""

import csv
import json
import sqlite3

import pytest

from pyscatter.conditions import Termination
from pyscatter import cli
from pyscatter.analysis.tally import wilson_interval
from pyscatter.workflows.campaign import parse_campaign, run_directory
from pyscatter.conditions import ConditionError, RunSpec

GRID = {"facets": ["111"], "states": [[0, 0], [1, 0]], "energies": [0.5], "models": ["emt"], "T": 300,
        "trajectories": 6, "snapshots": 2, "max_time": 150.0, "batch_size": 3}
TOML = """facets = ["111"]
states = [[0, 0], [1, 0]]
energies = [0.5]
models = ["emt"]
T = 300
trajectories = 6
snapshots = 2
max_time = 150.0
batch_size = 3
"""


def test_the_grid_is_the_product_of_its_lists():
    campaign = parse_campaign({**GRID, "facets": ["111", "100"], "T": [300, 925], "molecule": ["H2", "D2"],
                               "energies": [0.2, 0.5]})
    assert len(campaign.specs) == 2 * 2 * 2 * 2  # facets x states x T x molecules
    assert len(set(campaign.specs)) == len(campaign.specs)
    assert campaign.total == 16 * 2 * 6
    assert RunSpec(surface="100", temperature=925.0, v=1, J=0, molecule="D2", model="emt", n_snapshots=2,
                   termination=Termination(max_time=150.0)) in campaign.specs


@pytest.mark.parametrize("change, message", [
    ({"states": [[0]]}, "[v, J] pairs"),
    ({"energies": [-0.1]}, "collision energy"),
    ({"facets": ["113"]}, "unknown facet"),
    ({"trajectories": 0}, "trajectories"),
    ({"temperature": 300}, "unknown keys ['temperature']"),
    ({"states": [[0, 0], [0, 0]]}, "no repeats"),
])
def test_bad_campaigns_are_refused_before_anything_runs(change, message):
    with pytest.raises(ConditionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_campaign({**GRID, **change})


def test_campaign_reuses_and_resumes_run_directories(tmp_path, capsys):
    main = cli.main
    (tmp_path / "grid.toml").write_text(TOML)
    first = parse_campaign(GRID).specs[0]
    directory = run_directory(tmp_path, first)
    # a plain run did half of the first condition in the directory the campaign uses
    assert main(["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2",
                 "--max-time", "150", "--model", "emt", "--trajectories", "3", "--out", str(directory)]) == 0
    before = _rows(directory)
    capsys.readouterr()

    assert main(["campaign", str(tmp_path / "grid.toml"), "--root", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.strip().splitlines()]
    assert [(r["v"], r["J"], r["n_trajectories"]) for r in rows] == [(0, 0, 6), (1, 0, 6)]
    assert "12/12" in out.err  # one display over the whole campaign
    assert _rows(directory)[:3] == before
    for r in rows:
        stored = _rows(r["run_dir"])
        n_dissociated = sum(outcome == "dissociated" for _, outcome, _ in stored)
        assert len(stored) == 6 and r["n_dissociated"] == n_dissociated
        assert r["p_stick_ci"] == list(wilson_interval(n_dissociated, 6))

    with open(tmp_path / "grid_summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(t["p_stick"]) for t in table] == [r["p_stick"] for r in rows]
    assert float(table[0]["p_stick_ci_low"]) == rows[0]["p_stick_ci"][0]
    assert json.loads((tmp_path / "grid_summary.json").read_text()) == rows

    # rerunning a finished campaign computes nothing and prints the table
    assert main(["campaign", str(tmp_path / "grid.toml"), "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "P_stick" in out and "grid_summary.csv" in out
    again = json.loads((tmp_path / "grid_summary.json").read_text())
    assert [r["force_calls"] for r in again] == [r["force_calls"] for r in rows]


def _rows(directory):
    con = sqlite3.connect(f"{directory}/results.sqlite")
    try:
        return con.execute("SELECT idx, outcome, end_time_fs FROM trajectories ORDER BY idx").fetchall()
    finally:
        con.close()
