"""The parts of one ``chargen.train.fit`` call, by concern: shared state and vocabulary, the run directory,
evaluation and checkpoints, the step loop, its messages."""
