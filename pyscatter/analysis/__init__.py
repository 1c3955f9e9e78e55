"""Analysis of stored outcomes: tallies and Wilson intervals (:mod:`.tally`), reading a run directory
(:mod:`.stored`), sticking curves read from it (:mod:`.curves`), error-function fits (:mod:`.fitting`), the adaptive
sample-size rule (:mod:`.sample_size`), committees (:mod:`.committee`), final-state distributions
(:mod:`.finalstate`), per-trajectory tables (:mod:`.trajectories`), reactivity maps (:mod:`.reactivity`) and figures
(:mod:`.plotting`)."""
