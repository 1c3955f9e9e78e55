"""Workflows that drive the pipeline end to end: one run (:mod:`.run`), a sticking curve (:mod:`.curve`),
a campaign of runs (:mod:`.campaign`), the seam that sends trajectories to workers (:mod:`.execution`)
and the Dask set-up behind it (:mod:`.dask`)."""
