"""Imported first, and only, by the workers' forkserver: from here on it ignores Ctrl-C,
and so does every worker it forks, from birth.

The forkserver restores, in each child, the SIGINT handler it had after its preloads.
That was Python's own, which raises KeyboardInterrupt, until the worker's loop ignored
the signal. A Ctrl-C sent to the run's process group in that gap killed a worker still
starting, and the run took the worker's death for its own failure (exit 3, EOFError);
one sent while the forkserver imported torch killed the forkserver. The driver alone
decides when a run stops.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
