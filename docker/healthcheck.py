"""Container healthcheck: exit 0 when GET <url> answers 2xx within the timeout, else 1.

    python /app/docker/healthcheck.py http://127.0.0.1:8002/health

Standard library only (the slim image has no curl); used by every selfspec service in docker-compose.yml.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 5.0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: healthcheck.py URL\n")
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=TIMEOUT_S) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as err:
        sys.stderr.write(f"unhealthy: {argv[1]}: {err}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
