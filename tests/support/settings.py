"""Settings the whole suite runs with."""

# Small enough that the turn-limit tests end quickly.
TEST_MAX_MODEL_TURNS = 3
