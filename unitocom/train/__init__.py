"""Algorithm 1 of the letter as a training command: data, loop, validation, CLI."""
