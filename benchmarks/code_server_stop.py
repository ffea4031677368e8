"""How long a command waits for its code server to stop (issue 18, session 18): start the command's code server
(`cli/code_server.py`), wait until it answers, then time `stop()` (asked to shut down, its guard and process group
ended, its folder removed). Run it with each tree on PYTHONPATH to compare:

    PYTHONPATH=/path/to/tree python benchmarks/code_server_stop.py --rounds 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from cssci_platform.cli.code_server import start_code_server

    with tempfile.TemporaryDirectory() as logs:
        for _ in range(args.rounds):
            server = start_code_server(Path(logs))
            server.serving()
            started = time.perf_counter()
            server.stop()
            print(f"stop {time.perf_counter() - started:.3f} s", flush=True)


if __name__ == "__main__":
    main()
