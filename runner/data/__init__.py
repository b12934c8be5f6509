"""The data the runner ships (sqlqa: generated text-to-SQL records, train and test) and the code that made
it; a default run needs nothing else."""
