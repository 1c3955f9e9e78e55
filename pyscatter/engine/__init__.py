"""The engines (:mod:`.engines`: an :class:`~pyscatter.engine.engines.Engine` protocol, chosen by name): the native
continuous-batching runner (:mod:`.runner`) over batches of systems (:mod:`.batch`), velocity Verlet
(:mod:`.verlet`), free flight (:mod:`.free_flight`), stopping criteria (:mod:`.termination`) and periodic geometry
(:mod:`.geometry`); and the NQCDynamics.jl bridge (:mod:`.nqcd`)."""
