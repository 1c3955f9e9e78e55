"""Workflows that drive the pipeline end to end: one run (:mod:`.run`), a sticking curve (:mod:`.curve`),
a campaign of runs (:mod:`.campaign`), a model committee (:mod:`.committee`), replays (:mod:`.replay`), how a run
computes (:mod:`.settings`), the seam that sends trajectories to workers (:mod:`.execution`), the Dask set-up behind
it (:mod:`.dask`) and the progress display (:mod:`.progress`)."""
