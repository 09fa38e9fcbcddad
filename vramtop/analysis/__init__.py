"""Analysis: pure functions over numpy histories -> phases, OOM prediction, verdicts, segments."""
