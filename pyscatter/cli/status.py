"""``pyscatter status DIR``: progress of a run directory, read-only, also while its run is going."""

from __future__ import annotations

import json


def add_commands(commands, model_commands) -> None:
    status = commands.add_parser("status", help="progress of a run directory (read-only; works during a run)")
    status.add_argument("directory", metavar="DIR")
    status.add_argument("--json", action="store_true", help="print one JSON object per collision energy")
    status.set_defaults(handler=_status)


def condition_status(store, energy: float) -> dict:
    """Progress of the condition at ``energy`` (eV) of a :class:`~pyscatter.store.RunReader`.

    n_done: stored trajectories (failed included).  P_stick and its 95 % Wilson interval over the
    complete index prefix (``n``, as ``pyscatter curve`` and ``plot`` count).  wall_time_s: summed
    wall time of the stored batches, s.  eta_s: (target − done below it) × wall time per done
    trajectory, s; None without a recorded target or before the first batch.
    """
    from pyscatter.analysis.stored import complete_prefix
    from pyscatter.analysis.tally import Tally

    cid = store.condition_id(energy)
    everything = store.counts(cid)
    prefix = complete_prefix(store.done_indices(cid))
    tally = Tally(store.counts(cid, limit=prefix))
    target = store.target(cid)
    eta = None
    if target is not None and everything.n_trajectories and everything.wall_time_s > 0:
        remaining = target - store.count_done(cid, target)
        eta = remaining * everything.wall_time_s / everything.n_trajectories
    return {
        "collision_energy": energy, "n_done": everything.n_trajectories, "target": target,
        "n_failed": everything.n_failed, "n": prefix, "p_stick": tally.p_stick, "p_stick_ci": list(tally.p_stick_ci),
        "force_calls": everything.force_calls, "wall_time_s": everything.wall_time_s, "eta_s": eta,
    }


def _status(args) -> int:
    from pyscatter.store import RunReader

    with RunReader(args.directory) as store:
        rows = [condition_status(store, energy) for energy in store.collision_energies()]
        spec = store.spec
    if args.json:
        for row in rows:
            print(json.dumps({**spec.as_dict(), **row}))
        return 0
    print(f"{args.directory}: {spec.molecule}(v={spec.v}, J={spec.J})/{spec.slab_label}, {spec.temperature:g} K, model {spec.model}")
    print(f"{'E (eV)':>7} {'done':>13} {'failed':>6} {'P_stick':>8} {'95% CI':>17} {'force calls':>12} {'wall (s)':>9} {'ETA (s)':>8}")
    for r in rows:
        done = f"{r['n_done']}" + (f"/{r['target']}" if r["target"] is not None else "")
        eta = f"{r['eta_s']:8.0f}" if r["eta_s"] is not None else f"{'-':>8}"
        low, high = r["p_stick_ci"]
        print(f"{r['collision_energy']:7.3f} {done:>13} {r['n_failed']:6d} {r['p_stick']:8.4f} [{low:7.4f}, {high:7.4f}]"
              f" {r['force_calls']:12d} {r['wall_time_s']:9.1f} {eta}")
    return 0
