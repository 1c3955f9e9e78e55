# Free-flight checks of the ensemble runner against closed-form outcome times (no Python needed):
#   julia --project=julia/PyScatterNQCD -e 'using Pkg; Pkg.test()'
using Test
using PyScatterNQCD

"No forces at all: atoms fly in straight lines."
struct Free end
PyScatterNQCD.evaluate!(::Free, D, R) = (D .= 0.0; 0.0)
PyScatterNQCD.threadsafe(::Free) = true

const dt = 4.0
const max_steps = 500
crit = Criteria(; molecule=(2, 3), top_layer=[1], cell=[10.0 0 0; 0 10.0 0; 0 0 40.0],
                periodic=[true, true, false], molecule_masses=(1837.0, 1837.0),
                dissociation_distance=4.25, scatter_height=13.42, max_steps=max_steps, dt=dt)

function start(v_molecule; x=(4.3, 5.7))
    r = [0.0 x[1] x[2]; 0.0 5.0 5.0; 0.0 6.0 6.0]  # slab atom at the origin, H2 along x at 6 bohr
    v = hcat(zeros(3), v_molecule...)
    return r, v
end

@testset "free flight" begin
    vz = 0.01
    r1, v1 = start(([0, 0, vz], [0, 0, vz]))                  # rising: scattered
    r2, v2 = start(([-0.005, 0, 0], [0.005, 0, 0]))           # bond stretching: dissociated
    r3, v3 = start(([0, 0, 0], [0, 0, 0]))                    # at rest: trapped
    r4, v4 = start(([0, 0, 0], [0, 0, 0]); x=(0.3, 9.7))     # bonded across the cell edge: trapped
    out = run_ensemble(Free(), [29, 1, 1], [115800.0, 1837.0, 1837.0], [1], crit,
                       stack([r1, r2, r3, r4]), stack([v1, v2, v3, v4]))
    @test out.outcome == [PyScatterNQCD.SCATTERED, PyScatterNQCD.DISSOCIATED, PyScatterNQCD.TRAPPED, PyScatterNQCD.TRAPPED]
    @test out.steps[1] == floor(Int, (13.42 - 6.0) / (vz * dt)) + 1
    @test out.steps[2] == floor(Int, (4.25 - 1.4) / (0.01 * dt)) + 1
    @test out.steps[3] == max_steps
    @test out.positions[:, 1, :] == zeros(3, 4)               # the fixed atom never moves
    @test all(abs.(out.energy_drift) .< 1e-12)
    @test out.evaluations[3] >= max_steps
end
