"""Validate a model against a reference model on the observable: sticking probabilities along whole curves.

Three run directories per condition (a facet for H2(v=1, J=1); ``111v0``: H2(v=0, J=1) on Cu(111)) under ``--out``
(default ``benchmarks/results/validation``):

- ``reference_Cu<condition>``: the reference model (default: the published MACE teacher in ``../shared``).
- ``paired_Cu<condition>``: the model from identical initial conditions: the reference run's thermal
  snapshots (and lattice constant) and the same seed, so trajectory i has the same slab snapshot, impact
  point, orientation and vibrational phase in both (each model quantises the molecule on its own PES);
  ``--reference-trajectories`` per energy, a partner for each reference trajectory.
- ``unpaired_Cu<condition>``: the model on its own snapshots, which is what users get (``--model-trajectories``).

Another state than v=1 starts its reference and unpaired runs from the facet's v=1 reference and unpaired snapshots.

``--device cuda --batch-size 256`` runs the reference on a GPU, each process integrating that many trajectories at a
time; ``benchmarks/validate_on_gpu.sh`` runs several such processes on copies of the run directories until a deadline,
and the ``merge`` stage adds what they computed to the committed stores.

Stages (each resumes; run them in any order, again and again):

    python benchmarks/validate_model.py reference   # the reference runs, in rounds over all energies
    python benchmarks/validate_model.py model       # paired and unpaired runs of the model
    python benchmarks/validate_model.py report      # tables, tests, erf fits, plot, JSON, markdown table
    python benchmarks/validate_model.py merge --merge-from DIR  # add the trajectories of copies resumed elsewhere

``--energies`` restricts the reference and model stages to some of a condition's energies, e.g. more reference
trajectories (and their partners) where a comparison is undecided; the report takes each energy's own count.

Per energy the report gives P_stick of both, their difference with a 95 % Newcombe (hybrid score)
interval, Fisher's exact two-proportion test, and on the paired trajectories an exact McNemar test with
the discordant fraction; per condition the binomial erf fits (E0, W) of both and their differences (for the
paired runs also with the uncertainty from resampling the pairs), and the McNemar test of all energies' discordant pairs together; with both Cu(111) states fitted, E0(v=0) - E0(v=1) for
each (positive: v=1 lies ahead of v=0, vibrational efficacy).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, fisher_exact

from pyscatter.analysis.curves import complete_prefix, open_run
from pyscatter.analysis.fitting import FitError, fit_erf
from pyscatter.analysis.tally import wilson_interval
from pyscatter.conditions import RunSpec
from pyscatter.models import load_model
from pyscatter.outcomes import Outcome
from pyscatter.store import DB_NAME, RunStore
from pyscatter.workflows.run import SNAPSHOT_FILE, run

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
CONDITIONS = {"111": (0.3, 0.4, 0.5, 0.75), "211": (0.3, 0.45, 0.6, 0.85), "111v0": (0.5, 0.6, 0.75, 0.9),
              "100": (0.25, 0.32, 0.39, 0.46), "110": (0.3, 0.4, 0.5, 0.6)}
"""Collision energies (eV) per condition at 925 K, chosen so that P_stick spans about 0.1-0.8: H2(v=1, J=1) on a
facet ("111"), or H2(v=0, J=1) on it ("111v0"). Run directories are named ``<kind>_Cu<condition>``. Cu(100) and
Cu(110) from a probe of h2cu-ace (2026-12-07, 30-40 trajectories per energy): Cu(100) P = 7/40 at 0.3 eV and 19/30 at
0.45 eV; Cu(110) 4/40 at 0.3 eV and 12/27 at 0.45 eV."""
ROUNDS = (25, 50, 100, 150)
"""Reference trajectories per energy after each round: every energy gets the first 25 before any gets more."""
MODEL_ROUNDS = (100, 250, 500, 1000)
"""Unpaired model trajectories per energy after each round, likewise."""


def facet_and_v(condition: str) -> tuple[str, int]:
    """A :data:`CONDITIONS` key's facet, and v: 0 for a key ending in "v0", else 1 (J = 1 always)."""
    return condition[:3], 0 if condition.endswith("v0") else 1


def spec(condition: str, model: str) -> RunSpec:
    facet, v = facet_and_v(condition)
    return RunSpec(surface=facet, temperature=925.0, v=v, J=1, model=model)


def title(condition: str) -> str:
    facet, v = facet_and_v(condition)
    return f"H2(v={v}, J=1)/Cu({facet}), 925 K"


def energies(condition: str, args) -> tuple[float, ...]:
    """The collision energies (eV) to run for a condition: ``--energies`` (a subset of the condition's, in the order
    given: more trajectories where a comparison is undecided), by default all of :data:`CONDITIONS`."""
    if not args.energies:
        return CONDITIONS[condition]
    unknown = sorted(set(args.energies) - set(CONDITIONS[condition]))
    if unknown:
        sys.exit(f"--energies {unknown} eV: not among the energies of condition {condition}, {CONDITIONS[condition]}")
    return tuple(args.energies)


def v1_snapshots(kind: str, condition: str, out: Path) -> dict:
    """``run`` arguments for a ``kind`` run ("reference" or "unpaired") of another state than v=1: start from the
    facet's v=1 ``kind`` run's thermal snapshots when they exist (the same surface, temperature and model: the slab
    does not depend on the molecule's state); none for v=1."""
    facet, v = facet_and_v(condition)
    snapshots = out / f"{kind}_Cu{facet}" / SNAPSHOT_FILE
    return dict(snapshots_from=snapshots) if v != 1 and snapshots.is_file() else {}


def run_reference(args) -> None:
    """The reference runs, in rounds over all energies (:data:`ROUNDS`)."""
    chosen = {facet: energies(facet, args) for facet in args.facets}  # every facet's checked before any runs
    model = load_model(args.reference, trust=True, device=args.device)  # once, not per round and energy
    for n in [r for r in ROUNDS if r <= args.reference_trajectories] + [args.reference_trajectories]:
        for facet in args.facets:
            reuse = v1_snapshots("reference", facet, args.out)
            for energy in chosen[facet]:  # one energy per call: the store closes (and checkpoints) in between
                summary = run(spec(facet, args.reference), [energy], n, out_dir=args.out / f"reference_Cu{facet}",
                              model=model, workers=args.workers, trust_model=True, device=args.device,
                              batch_size=args.batch_size, last_start=args.last_start, **reuse)[0]
                print(f"reference Cu({facet}) {energy} eV: {summary['n_dissociated']}/{summary['n_trajectories']}",
                      flush=True)


def run_model(args) -> None:
    """The model's runs: a paired partner for each reference trajectory, then the unpaired runs in rounds over all
    energies (:data:`MODEL_ROUNDS`)."""
    chosen = {facet: energies(facet, args) for facet in args.facets}  # every facet's checked before any runs
    for facet in args.facets:
        snapshots = args.out / f"reference_Cu{facet}" / SNAPSHOT_FILE
        if not snapshots.is_file():
            sys.exit(f"no reference snapshots at {snapshots}: run the reference stage first")
        common = dict(workers=args.workers, trust_model=True, last_start=args.last_start)
        run(spec(facet, args.model), chosen[facet], args.reference_trajectories,  # a partner for each reference one
            out_dir=args.out / f"paired_Cu{facet}", snapshots_from=snapshots, **common)
        for n in [r for r in MODEL_ROUNDS if r < args.model_trajectories] + [args.model_trajectories]:
            run(spec(facet, args.model), chosen[facet], n, out_dir=args.out / f"unpaired_Cu{facet}",
                **v1_snapshots("unpaired", facet, args.out), **common)


def merge(args) -> None:
    """Add the trajectories of the run directories under each ``--merge-from`` folder (copies of ``--out``'s, resumed
    elsewhere, e.g. on a GPU machine) to the run directories of the same name under ``--out``."""
    for folder in args.merge_from:
        for source in sorted(folder.glob("*_Cu*/")):
            target = args.out / source.name
            if not (source / DB_NAME).is_file():
                continue
            if not (target / DB_NAME).is_file():
                sys.exit(f"{source}: no run {target} to merge it into (copy the directory instead)")
            with open_run(source) as given, RunStore(target, given.spec, given.provenance) as store:
                print(f"{source} -> {target}: {store.merge(source)} trajectories added", flush=True)


def outcomes(directory: Path) -> dict[float, dict[int, Outcome]]:
    """Per collision energy, the outcome of each trajectory of the complete index prefix (failed ones left out)."""
    with open_run(directory) as store:
        result = {}
        for energy in store.collision_energies():
            cid = store.condition_id(energy)
            n = complete_prefix(store.done_indices(cid))
            result[energy] = {r.index: r.outcome for r in store.trajectories(cid)
                              if r.index < n and r.outcome is not Outcome.FAILED}
        return result


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 and its 95 % hybrid score interval (Newcombe 1998, method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1)
    l2, u2 = wilson_interval(k2, n2)
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def compare(model: dict[int, Outcome], reference: dict[int, Outcome], paired: bool) -> dict:
    """Model against reference at one energy: probabilities, difference, tests. Paired: on their common trajectory
    indices only (partners run ahead of a reference prefix with gaps wait for it)."""
    if paired:
        model, reference = common_pairs(model, reference), common_pairs(reference, model)
    stick = lambda runs: sum(o is Outcome.DISSOCIATED for o in runs.values())  # noqa: E731
    k1, n1, k2, n2 = stick(model), len(model), stick(reference), len(reference)
    d, low, high = newcombe(k1, n1, k2, n2)
    row = {"n_model": n1, "p_model": k1 / n1, "n_reference": n2, "p_reference": k2 / n2,
           "difference": d, "difference_ci": [low, high],
           "fisher_p": float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)}
    if paired:
        common = sorted(model)
        b = sum(model[i] is Outcome.DISSOCIATED and reference[i] is not Outcome.DISSOCIATED for i in common)
        c = sum(model[i] is not Outcome.DISSOCIATED and reference[i] is Outcome.DISSOCIATED for i in common)
        row.update(n_pairs=len(common), discordant=[b, c], discordant_fraction=(b + c) / max(len(common), 1),
                   mcnemar_p=float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0,
                   paired_difference=(b - c) / max(len(common), 1))
    return row


def common_pairs(runs: dict[int, Outcome], partners: dict[int, Outcome]) -> dict[int, Outcome]:
    """The outcomes of ``runs`` whose trajectory index ``partners`` also holds."""
    return {i: o for i, o in runs.items() if i in partners}


def fit(runs: dict[float, dict[int, Outcome]]) -> dict | None:
    energies = sorted(runs)
    try:
        f = fit_erf(energies, [sum(o is Outcome.DISSOCIATED for o in runs[e].values()) for e in energies],
                    [len(runs[e]) for e in energies])
    except FitError:
        return None
    return f.as_dict()


PAIRED_DRAWS = 1000
"""Bootstrap resamples of the pairs behind the paired fit differences."""


def paired_fit_difference(model: dict[float, dict[int, Outcome]], reference: dict[float, dict[int, Outcome]],
                          draws: int = PAIRED_DRAWS, seed: int = 0) -> dict | None:
    """E0 and W of the model's erf fit minus the reference's (eV) on their common pairs, with a standard deviation and
    95 % percentile interval from resampling the pairs (per energy, the same trajectory indices for both models).

    The independent errors of the two fits, combined in quadrature, ignore that paired trajectories mostly end alike;
    resampling pairs keeps that correlation, so it measures the difference as sharply as the McNemar test does.
    """
    energies = sorted(set(model) & set(reference))
    stuck = []
    for energy in energies:
        common = sorted(set(model[energy]) & set(reference[energy]))
        stuck.append(np.array([[runs[energy][i] is Outcome.DISSOCIATED for i in common] for runs in (model, reference)]))

    def fits(choices: list[np.ndarray], starts=(None, None)) -> list:
        """The model's and the reference's fit to the chosen pairs (per energy, indices into the common pairs)."""
        n = [len(c) for c in choices]
        return [fit_erf(energies, [int(s[k, c].sum()) for s, c in zip(stuck, choices)], n, start=starts[k])
                for k in (0, 1)]

    try:
        point = fits([np.arange(s.shape[1]) for s in stuck])
    except FitError:
        return None
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        try:
            own, ref = fits([rng.integers(0, s.shape[1], s.shape[1]) for s in stuck], starts=point)
        except FitError:
            continue
        samples.append((own.E0 - ref.E0, own.W - ref.W))
    samples = np.array(samples)
    return {"E0": point[0].E0 - point[1].E0, "W": point[0].W - point[1].W, "draws": len(samples),
            **{f"{q}_sd": float(samples[:, k].std(ddof=1)) for k, q in enumerate(("E0", "W"))},
            **{f"{q}_ci95": np.percentile(samples[:, k], [2.5, 97.5]).tolist() for k, q in enumerate(("E0", "W"))}}


def report(args) -> dict:
    record = {"reference": args.reference, "model": args.model, "facets": {}}
    for facet in args.facets:
        dirs = {k: args.out / f"{k}_Cu{facet}" for k in ("reference", "paired", "unpaired")}
        if not (dirs["reference"] / "results.sqlite").is_file():
            continue
        runs = {k: outcomes(d) for k, d in dirs.items() if (d / "results.sqlite").is_file()}
        if "paired" in runs:  # the paired curve: partners of reference trajectories only
            runs["paired"] = {e: common_pairs(m, runs["reference"].get(e, {})) for e, m in runs["paired"].items()}
        rows = []
        for energy in sorted(runs["reference"]):
            row = {"collision_energy": energy}
            for kind in ("paired", "unpaired"):
                if energy in runs.get(kind, {}):
                    row[kind] = compare(runs[kind][energy], runs["reference"][energy], paired=kind == "paired")
            rows.append(row)
        fits = {k: fit(r) for k, r in runs.items()}
        differences = {k: {q: fits[k][f"{q}_eV"] - fits["reference"][f"{q}_eV"] for q in ("E0", "W")}
                       | {f"{q}_err": math.hypot(fits[k][f"{q}_err_eV"], fits["reference"][f"{q}_err_eV"])
                          for q in ("E0", "W")}
                       for k in ("paired", "unpaired") if fits.get(k) and fits.get("reference")}
        paired = paired_fit_difference(runs["paired"], runs["reference"]) if "paired" in runs else None
        record["facets"][facet] = {"rows": rows, "fits": fits, "fit_differences": differences,
                                   "paired_fit_difference": paired, "paired_pooled": pooled(rows)}
        print(format_facet(facet, rows, fits, differences, record["facets"][facet]["paired_pooled"]))
        if paired:
            print(f"  paired - reference, resampling the pairs: ΔE0 = {1e3 * paired['E0']:+.0f} ± {1e3 * paired['E0_sd']:.0f} meV "
                  f"[{1e3 * paired['E0_ci95'][0]:+.0f}, {1e3 * paired['E0_ci95'][1]:+.0f}], ΔW = {1e3 * paired['W']:+.0f} ± "
                  f"{1e3 * paired['W_sd']:.0f} meV")
    efficacy = {kind: {"E0_eV": fits_v0[kind]["E0_eV"] - fits_v1[kind]["E0_eV"],
                       "E0_err_eV": math.hypot(fits_v0[kind]["E0_err_eV"], fits_v1[kind]["E0_err_eV"])}
                for fits_v0, fits_v1 in [[record["facets"].get(k, {}).get("fits", {}) for k in ("111v0", "111")]]
                for kind in ("reference", "paired", "unpaired") if fits_v0.get(kind) and fits_v1.get(kind)}
    if efficacy:  # v=1 ahead of v=0 (vibrational efficacy): E0(v=0) - E0(v=1) > 0; error: the fits' in quadrature
        record["v0_minus_v1_E0_Cu111"] = efficacy
        print("E0(v=0) - E0(v=1) on Cu(111): " + ", ".join(
            f"{k} {1e3 * d['E0_eV']:+.0f} ± {1e3 * d['E0_err_eV']:.0f} meV" for k, d in efficacy.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "validation.md").write_text(markdown_table(record))
    plot(record, args.out / "validation.png")
    print(f"wrote {args.out / 'validation.json'}, {args.out / 'validation.md'}, {args.out / 'validation.png'}")
    return record


def markdown_table(record: dict) -> str:
    """The per-energy comparison as the markdown table of docs/validation.md (discordant pairs: model-only / reference-only)."""
    lines = ["| condition | E (eV) | reference P_stick (n) | model paired (n) | discordant pairs | McNemar p "
             "| model unpaired (n) | Fisher p |", "|" + " --- |" * 8]
    for condition, facet in record["facets"].items():
        facet_name, v = facet_and_v(condition)
        for row in facet["rows"]:
            p, u = row.get("paired"), row.get("unpaired")
            ref = u or p  # the unpaired comparison sees the whole reference
            cells = [f"{facet_name} (v={v})", f"{row['collision_energy']:.2f}",
                     f"{ref['p_reference']:.3f} ({ref['n_reference']})" if ref else ""]
            cells += ([f"{p['p_model']:.3f} ({p['n_model']})", f"{p['discordant'][0]} / {p['discordant'][1]} of "
                       f"{p['n_pairs']}", p_value(p['mcnemar_p'])] if p else ["", "", ""])
            cells += [f"{u['p_model']:.3f} ({u['n_model']})", p_value(u['fisher_p'])] if u else ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def p_value(p: float) -> str:
    """Two decimals, or two significant digits below 0.01 (where the bar lies)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def pooled(rows: list[dict]) -> dict | None:
    """The discordant pairs of all energies together (model-only, reference-only dissociations) and their exact
    McNemar test: sharper than any one energy against a shift of the whole curve, which the bar's per-energy
    tests can miss."""
    paired = [row["paired"] for row in rows if "paired" in row]
    if not paired:
        return None
    b, c = (sum(p["discordant"][k] for p in paired) for k in (0, 1))
    return {"discordant": [b, c], "n_pairs": sum(p["n_pairs"] for p in paired),
            "mcnemar_p": float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0}


def format_facet(facet: str, rows: list[dict], fits: dict, differences: dict, pool: dict | None) -> str:
    lines = [title(facet),
             f"{'E (eV)':>7} {'P_ref (n)':>14} {'P_paired (n)':>14} {'diff [95% CI]':>24} {'McNemar p':>9} "
             f"{'discord.':>8} {'P_unpaired (n)':>15} {'diff [95% CI]':>24} {'Fisher p':>8}"]
    for row in rows:
        p, u = row.get("paired"), row.get("unpaired")
        ref = p or u
        cells = [f"{row['collision_energy']:7.3f}",
                 f"{ref['p_reference']:.3f} ({ref['n_reference']})".rjust(14) if ref else " " * 14]
        for kind, r in (("paired", p), ("unpaired", u)):
            if r is None:
                cells.append(" " * (14 + 25 + (19 if kind == "paired" else 9)))
                continue
            cells.append(f"{r['p_model']:.3f} ({r['n_model']})".rjust(14 if kind == "paired" else 15))
            cells.append(f"{r['difference']:+.3f} [{r['difference_ci'][0]:+.3f}, {r['difference_ci'][1]:+.3f}]".rjust(24))
            if kind == "paired":
                cells.append(f"{r['mcnemar_p']:9.3f} {r['discordant_fraction']:8.3f}")
            else:
                cells.append(f"{r['fisher_p']:8.3f}")
        lines.append(" ".join(cells))
    for kind, f in fits.items():
        if f:
            lines.append(f"  erf fit {kind:>9}: E0 = {f['E0_eV']:.3f} ± {f['E0_err_eV']:.3f} eV, "
                         f"W = {f['W_eV']:.3f} ± {f['W_err_eV']:.3f} eV, A = {f['A']:.3f}")
    if pool:
        lines.append(f"  paired, all energies: {pool['discordant'][0]} model-only and {pool['discordant'][1]} reference-only "
                     f"dissociations in {pool['n_pairs']} pairs, McNemar p = {pool['mcnemar_p']:.3f}")
    for kind, d in differences.items():
        lines.append(f"  {kind} - reference: ΔE0 = {1e3 * d['E0']:+.0f} ± {1e3 * d['E0_err']:.0f} meV, "
                     f"ΔW = {1e3 * d['W']:+.0f} ± {1e3 * d['W_err']:.0f} meV")
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    facets = list(record["facets"])
    if not facets:
        return
    fig, axes = plt.subplots(1, len(facets), figsize=(5.5 * len(facets), 4.2), squeeze=False)
    for ax, facet in zip(axes[0], facets):
        rows = record["facets"][facet]["rows"]
        for kind, label, shift, style in (("reference", "reference (MACE teacher)", 0.0, "ko"),
                                          ("paired", "model, paired", -0.006, "C0s"),
                                          ("unpaired", "model, own snapshots", 0.006, "C1^")):
            points = [(row["collision_energy"], row.get("paired") or row.get("unpaired"), row.get(kind)) for row in rows]
            data = []
            for energy, any_row, r in points:
                if kind == "reference" and any_row:
                    k, n = round(any_row["p_reference"] * any_row["n_reference"]), any_row["n_reference"]
                elif r:
                    k, n = round(r["p_model"] * r["n_model"]), r["n_model"]
                else:
                    continue
                lo, hi = wilson_interval(k, n)
                data.append((energy + shift, k / n, k / n - lo, hi - k / n))
            if data:
                e, p, lo, hi = map(np.array, zip(*data))
                ax.errorbar(e, p, yerr=[lo, hi], fmt=style, capsize=3, label=label)
        ax.set_title(title(facet))
        ax.set_xlabel("collision energy (eV)")
        ax.set_ylabel("P_stick (95 % Wilson)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("reference", "model", "report", "merge"))
    parser.add_argument("--model", default="h2cu-ace")
    parser.add_argument("--reference", default=str(TEACHER))
    parser.add_argument("--facets", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--energies", type=float, nargs="+", help="eV, a subset of each condition's (default all)")
    parser.add_argument("--reference-trajectories", type=int, default=150)
    parser.add_argument("--model-trajectories", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the reference (a torch model) runs, e.g. cuda")
    parser.add_argument("--batch-size", type=int, help="systems integrated together per process (default: the model's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "validation")
    parser.add_argument("--merge-from", type=Path, nargs="+", default=[],
                        help="merge: folders of run directories to add to --out's")
    parser.add_argument("--start-for", type=float, help="s: start trajectories for this long only, then finish those "
                        "started and stop (resumable)")
    args = parser.parse_args()
    args.last_start = None if args.start_for is None else time.time() + args.start_for
    {"reference": run_reference, "model": run_model, "report": report, "merge": merge}[args.stage](args)


if __name__ == "__main__":
    main()
