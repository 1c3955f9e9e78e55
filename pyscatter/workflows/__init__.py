"""Workflows that drive the pipeline end to end: one run (:mod:`.run`), a sticking curve (:mod:`.curve`),
a campaign of runs (:mod:`.campaign`), and the seam that sends trajectories to workers (:mod:`.execution`)."""
