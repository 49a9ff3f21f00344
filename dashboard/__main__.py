"""Run the dashboard on its own against a remote API: ``python -m toroid.dashboard --api-url http://host:8000/api``.

`toroid up` and `toroid api` already serve the dashboard next to the API (under /dashboard/); this entry point is for
running it in its own process or container. It uses Flask's server, fine for a handful of users; behind a production
WSGI server use ``create_dash(...).server``.
"""

from __future__ import annotations

import argparse
import os

from toroid.dashboard.app import create_dash


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toroid.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", default=os.environ.get("TOROID_DASHBOARD_API_URL", "http://127.0.0.1:8000/api"),
                        help="API base URL as the dashboard server reaches it (default TOROID_DASHBOARD_API_URL)")
    parser.add_argument("--public-api-url", default=os.environ.get("TOROID_PUBLIC_API_URL"),
                        help="API base URL as browsers reach it (default TOROID_PUBLIC_API_URL, else --api-url)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args(argv)
    app = create_dash(args.api_url, prefix="/", public_api_url=args.public_api_url or args.api_url)
    app.run(host=args.host, port=args.port, debug=False)


if __name__ == "__main__":  # pragma: no cover
    main()
