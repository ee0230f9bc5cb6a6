"""Runs a repro script as `python script.py` would, in a process forked from a server that
has imported torch and nothing else of ours: the script's own imports are all it gets, and
each script saves the 2 s of `import torch` a fresh interpreter pays.

Kept apart from the tests so that unpickling `run_script` in the child imports nothing."""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
import traceback


def run_script(path: str, cwd: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of running `path` as the main module in `cwd`."""
    os.chdir(cwd)
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()
