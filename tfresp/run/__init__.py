"""Run internals: the builder, the run context, checkpoints, run directories, file writes, distribution."""
