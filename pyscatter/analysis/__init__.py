"""Analysis of stored outcomes: tallies and Wilson intervals (:mod:`.tally`), sticking curves read from a
run directory (:mod:`.curves`), error-function fits (:mod:`.fitting`), the adaptive sample-size rule
(:mod:`.sample_size`), final-state distributions (:mod:`.finalstate`) and figures (:mod:`.plotting`)."""
