"""Creates through `app.test_client()` (no gunicorn, one thread), for `instructions.sh`,
which runs this under valgrind's callgrind twice (with two counts of creates) and takes
the difference: the instructions one create costs in this process, the same from one run
to the next whatever else the machine does (bench/README.md, seventh pass).

    .venv/bin/python bench/count_creates.py CREATES [--postgres]

150 creates come first, so that both runs start from the same warm state (imports, the
statements compiled, the prepared statements of PostgreSQL). The request log's thread is
held off (SCIM_LOG_FLUSH_SECONDS, set by instructions.sh): its flushes follow the clock,
which valgrind slows fifty times.
"""

from __future__ import annotations

import argparse

from profile_scim import body  # bench/profile_scim.py (this script runs from bench/)
from scratch import close, demo_app, scratch

WARM_UP = 150


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("creates", type=int)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with scratch(args.postgres, "scim-count"):
        app, client, path, headers = demo_app()
        for i in range(WARM_UP + args.creates):
            response = client.post(path, json=body(i), headers=headers)
            if response.status_code != 201:
                raise SystemExit(f"create {i}: {response.status_code} {response.get_data()!r}")
        close(app)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
