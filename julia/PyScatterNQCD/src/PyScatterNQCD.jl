"""
    PyScatterNQCD

pyscatter's trajectories integrated by NQCDynamics.jl: `Simulation{Classical}` with velocity
Verlet, terminated by the three pyscatter outcomes, run as a SciML ensemble.

Everything here is in Hartree atomic units (bohr, hartree, electron masses, atomic time); the
Python side (`pyscatter.engine.nqcd`) converts to and from pyscatter's ASE units. The one
exception is the ACEpotentials model, which speaks Unitful eV/Å: it is stripped to atomic units
by `UnitfulAtomic.austrip` where it is evaluated.

Initial conditions and final-state (v', J') analysis stay in Python, so none of NQCDynamics'
`QuantisedDiatomic` / `OutputQuantisedDiatomic` conventions are involved.
"""
module PyScatterNQCD

using LinearAlgebra: norm
using Statistics: mean

using ACEpotentials: ACEpotentials
using AtomsCalculators: AtomsCalculators
using NQCBase: NQCBase, Atoms, PeriodicCell, set_periodicity!
using NQCDynamics: Simulation, Classical, DynamicsMethods, DynamicsUtils
using NQCModels: NQCModels
using PeriodicTable: elements
using PythonCall: Py, pyconvert
using SciMLBase: SciMLBase
using UnitfulAtomic: austrip

export Criteria, PythonEvaluator, ACEEvaluator, load_ace, run_ensemble, evaluate

# Outcome codes, equal to pyscatter.outcomes.Outcome.
const RUNNING = 0
const DISSOCIATED = 1
const SCATTERED = 2
const TRAPPED = 3

# ---------------------------------------------------------------------------------------------
# Evaluators: `evaluate!(evaluator, D, R) -> V` fills D = ∂V/∂R (3, N) for positions R (3, N).

"""
    PythonEvaluator(f)

A pyscatter force model seen from Julia: the Python callable `f(R)` takes positions (3, N) in
bohr and returns `(V, dVdR)`, V in hartree and dVdR as a (N, 3) array in hartree/bohr. Python
holds the GIL, so trajectories using it run one after another on the calling thread.
"""
struct PythonEvaluator
    f::Py
end

function evaluate!(evaluator::PythonEvaluator, D::AbstractMatrix, R::AbstractMatrix)
    out = evaluator.f(R)
    D .= transpose(pyconvert(Matrix{Float64}, out[1]))
    return pyconvert(Float64, out[0])
end

threadsafe(::PythonEvaluator) = false

"""
    ACEEvaluator(potential, numbers, cell, periodic)

An ACEpotentials.jl potential evaluated in Julia. `numbers`: atomic numbers (N,);
`cell`: (3, 3) bohr with the cell vectors as columns; `periodic`: periodicity per vector.
"""
struct ACEEvaluator{P}
    potential::P
    atoms::Atoms{Float64}
    cell::PeriodicCell{Float64}
end

function ACEEvaluator(potential, numbers, cell, periodic)
    atoms = Atoms(element_symbols(numbers))
    return ACEEvaluator(potential, atoms, periodic_cell(cell, periodic))
end

function evaluate!(evaluator::ACEEvaluator, D::AbstractMatrix, R::AbstractMatrix)
    system = NQCBase.System(evaluator.atoms, R, evaluator.cell)
    # ntasks = 1: parallelism comes from the ensemble, one trajectory per thread.
    efv = AtomsCalculators.energy_forces_virial(system, evaluator.potential; ntasks=1)
    for (i, force) in enumerate(efv.forces)
        D[:, i] .= .-austrip.(force)
    end
    return austrip(efv.energy)
end

threadsafe(::ACEEvaluator) = true

"""
    load_ace(path)

The potential of an ACEpotentials.jl model file written by `ACEpotentials.save_model`.
"""
load_ace(path::AbstractString) = first(ACEpotentials.load_model(path))

"""
    evaluate(evaluator, R) -> (V, D)

One evaluation outside dynamics: V in hartree, D = ∂V/∂R (3, N) in hartree/bohr.
"""
function evaluate(evaluator, R::AbstractMatrix)
    D = zeros(3, size(R, 2))
    V = evaluate!(evaluator, D, Matrix{Float64}(R))
    return V, D
end

element_symbols(numbers) = [Symbol(elements[Int(z)].symbol) for z in numbers]

function periodic_cell(cell, periodic)
    pc = PeriodicCell(Matrix{Float64}(cell))
    set_periodicity!(pc, Bool.(collect(periodic)))
    return pc
end

# ---------------------------------------------------------------------------------------------
# The NQCModels model: one evaluation per new geometry, fixed atoms feel no force.

"""
    FixedAtomsModel(evaluator, fixed, natoms)

A `ClassicalModel` wrapping an evaluator. NQCDynamics asks for the potential and the derivative
at the same positions separately (and again after callbacks); the last geometry's result is
kept, so each geometry costs one evaluation. The derivative is overwritten, never accumulated,
and its columns for the `fixed` atoms (1-based) are zero: with zero initial velocity they never move.
"""
struct FixedAtomsModel{E} <: NQCModels.ClassicalModels.ClassicalModel
    evaluator::E
    fixed::Vector{Int}
    R::Matrix{Float64}
    D::Matrix{Float64}
    V::Base.RefValue{Float64}
    evaluations::Base.RefValue{Int}
end

FixedAtomsModel(evaluator, fixed, natoms::Integer) =
    FixedAtomsModel(evaluator, Int.(collect(fixed)), fill(NaN, 3, natoms), zeros(3, natoms), Ref(NaN), Ref(0))

NQCModels.ndofs(::FixedAtomsModel) = 3

function refresh!(model::FixedAtomsModel, R::AbstractMatrix)
    if R != model.R
        copyto!(model.R, R)
        model.V[] = evaluate!(model.evaluator, model.D, model.R)
        model.D[:, model.fixed] .= 0.0
        model.evaluations[] += 1
    end
    return model
end

NQCModels.potential(model::FixedAtomsModel, R::AbstractMatrix) = refresh!(model, R).V[]

function NQCModels.derivative!(model::FixedAtomsModel, D::AbstractMatrix, R::AbstractMatrix)
    D .= refresh!(model, R).D
    return D
end

# ---------------------------------------------------------------------------------------------
# Stopping criteria, identical to pyscatter.engine.stopping.

"""
    Criteria(; molecule, top_layer, cell, periodic, molecule_masses,
               dissociation_distance, scatter_height, max_steps, dt)

molecule: the two molecular atoms (1-based); top_layer: slab top-layer atoms (1-based);
cell: (3, 3) bohr, cell vectors as columns; periodic: periodicity per cell vector;
molecule_masses: electron masses; dissociation_distance, scatter_height: bohr;
max_steps: steps after which a running trajectory is trapped; dt: atomic time units.
"""
struct Criteria
    molecule::NTuple{2,Int}
    top_layer::Vector{Int}
    cell::Matrix{Float64}
    inverse::Matrix{Float64}
    periodic::Vector{Bool}
    molecule_masses::NTuple{2,Float64}
    dissociation_distance::Float64
    scatter_height::Float64
    max_steps::Int
    dt::Float64
end

function Criteria(; molecule, top_layer, cell, periodic, molecule_masses,
                  dissociation_distance, scatter_height, max_steps, dt)
    c = Matrix{Float64}(cell)
    return Criteria(Tuple(Int.(collect(molecule))), Int.(collect(top_layer)), c, inv(c),
                    Bool.(collect(periodic)), Tuple(Float64.(collect(molecule_masses))),
                    dissociation_distance, scatter_height, max_steps, dt)
end

"Shortest periodic image of a displacement (exact below half a cell height)."
function minimum_image(crit::Criteria, d::AbstractVector)
    f = crit.inverse * d
    for k in 1:3
        crit.periodic[k] && (f[k] -= round(f[k]))
    end
    return crit.cell * f
end

bond_length(crit::Criteria, R) = norm(minimum_image(crit, R[:, crit.molecule[2]] - R[:, crit.molecule[1]]))

"Centre-of-mass height above the mean top layer and its vertical velocity."
function molecule_height(crit::Criteria, R, V)
    (a, b), (ma, mb) = crit.molecule, crit.molecule_masses
    z = (ma * R[3, a] + mb * R[3, b]) / (ma + mb)
    vz = (ma * V[3, a] + mb * V[3, b]) / (ma + mb)
    return z - mean(R[3, i] for i in crit.top_layer), vz
end

step_count(crit::Criteria, t) = round(Int, t / crit.dt)

dissociated(crit::Criteria, R) = bond_length(crit, R) > crit.dissociation_distance

function scattered(crit::Criteria, R, V)
    height, vz = molecule_height(crit, R, V)
    return height > crit.scatter_height && vz > 0
end

trapped(crit::Criteria, t) = step_count(crit, t) >= crit.max_steps

"Outcome code: dissociation first, then scattering, then t_max."
function outcome(crit::Criteria, R, V, t)
    dissociated(crit, R) && return DISSOCIATED
    scattered(crit, R, V) && return SCATTERED
    trapped(crit, t) && return TRAPPED
    return RUNNING
end

"One NQCDynamics `TerminatingCallback` per outcome."
function outcome_callbacks(crit::Criteria)
    positions, velocities = DynamicsUtils.get_positions, DynamicsUtils.get_velocities
    return (
        DynamicsUtils.TerminatingCallback((u, t, integrator) -> dissociated(crit, positions(u))),
        DynamicsUtils.TerminatingCallback((u, t, integrator) -> scattered(crit, positions(u), velocities(u))),
        DynamicsUtils.TerminatingCallback((u, t, integrator) -> trapped(crit, t)),
    )
end

# ---------------------------------------------------------------------------------------------
# Energy conservation record, as kept by the native engine.

"Total energy at t = 0, its last deviation (drift) and the largest |deviation| (hartree)."
mutable struct EnergyMonitor
    initial::Float64
    drift::Float64
    max_error::Float64
end

EnergyMonitor() = EnergyMonitor(NaN, 0.0, 0.0)

total_energy(integrator) = DynamicsUtils.classical_hamiltonian(integrator.p, integrator.u)

function energy_callback(monitor::EnergyMonitor)
    function start!(c, u, t, integrator)
        monitor.initial = total_energy(integrator)
        SciMLBase.u_modified!(integrator, false)
    end
    function record!(integrator)
        monitor.drift = total_energy(integrator) - monitor.initial
        monitor.max_error = max(monitor.max_error, abs(monitor.drift))
        SciMLBase.u_modified!(integrator, false)
    end
    return SciMLBase.DiscreteCallback((u, t, integrator) -> true, record!;
                                      initialize=start!, save_positions=(false, false))
end

# ---------------------------------------------------------------------------------------------
# The ensemble.

struct Trajectory{M}
    model::M
    monitor::EnergyMonitor
end

"""
A fresh `Simulation{Classical}` (own cache, own model memory) for trajectory `i`, so that
threads never share mutable state; started from column `i` of r0/v0.
"""
function trajectory_problem(evaluator, atoms, fixed, crit, cell, r0, v0, i)
    model = FixedAtomsModel(evaluator, fixed, length(atoms))
    sim = Simulation{Classical}(atoms, model; cell=cell)
    u0 = DynamicsMethods.DynamicsVariables(sim, v0[:, :, i], r0[:, :, i])
    problem = DynamicsMethods.create_problem(u0, (0.0, crit.max_steps * crit.dt), sim)
    monitor = EnergyMonitor()
    callbacks = SciMLBase.CallbackSet(energy_callback(monitor), outcome_callbacks(crit)...)
    return SciMLBase.remake(problem; callback=callbacks), Trajectory(model, monitor)
end

function trajectory_output(sol, crit::Criteria, trajectory::Trajectory)
    u = sol.u[end]
    R = copy(DynamicsUtils.get_positions(u))
    V = copy(DynamicsUtils.get_velocities(u))
    t = sol.t[end]
    return (outcome=outcome(crit, R, V, t), steps=step_count(crit, t), positions=R, velocities=V,
            energy_drift=trajectory.monitor.drift, max_energy_error=trajectory.monitor.max_error,
            evaluations=trajectory.model.evaluations[])
end

"""
    run_ensemble(evaluator, numbers, masses, fixed, crit, r0, v0; threads=true)

Integrate trajectories from positions `r0` and velocities `v0` (3, N, T), atomic units, with
velocity Verlet at `crit.dt` until an outcome. numbers: atomic numbers (N,); masses: electron
masses (N,); fixed: atoms (1-based) that never move. Trajectories run on Julia's threads when
the evaluator allows it (start Julia with several threads), else serially.

Returns per trajectory (last axis): outcome codes, completed steps, final positions and
velocities (3, N, T), energy drift and max energy error (hartree), model evaluations.
"""
function run_ensemble(evaluator, numbers, masses, fixed, crit::Criteria, r0, v0; threads::Bool=true)
    r0, v0 = Array{Float64,3}(r0), Array{Float64,3}(v0)
    n = size(r0, 3)
    atoms = Atoms{Float64}(element_symbols(numbers), Int.(collect(numbers)), Float64.(collect(masses)))
    cell = periodic_cell(crit.cell, crit.periodic)
    trajectories = Vector{Any}(undef, n)
    function prob_func(prob, i, repeat)
        problem, trajectories[i] = trajectory_problem(evaluator, atoms, fixed, crit, cell, r0, v0, i)
        return problem
    end
    output_func(sol, i) = (trajectory_output(sol, crit, trajectories[i]), false)
    template, _ = trajectory_problem(evaluator, atoms, fixed, crit, cell, r0, v0, 1)
    ensemble = SciMLBase.EnsembleProblem(template; prob_func=prob_func, output_func=output_func, safetycopy=false)
    parallel = threads && threadsafe(evaluator) ? SciMLBase.EnsembleThreads() : SciMLBase.EnsembleSerial()
    solution = SciMLBase.solve(ensemble, DynamicsMethods.select_algorithm(template.p), parallel;
                               trajectories=n, dt=crit.dt, save_everystep=false, save_start=false,
                               maxiters=crit.max_steps + 10)
    out = solution.u
    return (outcome=[o.outcome for o in out], steps=[o.steps for o in out],
            positions=stack([o.positions for o in out]), velocities=stack([o.velocities for o in out]),
            energy_drift=[o.energy_drift for o in out], max_energy_error=[o.max_energy_error for o in out],
            evaluations=[o.evaluations for o in out])
end

end # module
