"""A run's defaults, shared by `RunConfig` and the command line. Kept apart from the driver
so that `sdpa-fuzz --help` and bad usage answer without importing torch (5 s)."""

TIME_BUDGET_S = 60.0
MAX_EXAMPLES = 10**9  # in effect none: the time budget ends a run
PROBES = 20  # cases a finding's knobs are probed with: a few per knob, 2 to 5 knobs
