"""`python -m sim.mailchimp --host 127.0.0.1 --port 8099 [--seed-members N]`."""

from __future__ import annotations

import argparse
import time

import uvicorn

from sim.mailchimp.app import create_app
from sim.mailchimp.simulator import Simulator


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Mailchimp Marketing API v3 simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--seed-members",
        type=int,
        default=0,
        help="create an account and a list with this many members",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed value for --seed-members")
    parser.add_argument("--api-key", default=None, help="API key for the seeded account")
    return parser.parse_args()


def main() -> None:
    """Seed (optionally), print the key and list id, then serve until interrupted."""
    args = parse_args()
    simulator = Simulator()
    account = simulator.create_account("Seeded Org", args.api_key)
    audience = simulator.create_list(account.api_key, "Seeded list")
    started = time.perf_counter()
    if args.seed_members:
        simulator.seed_members(audience.id, args.seed_members, args.seed)
    seconds = time.perf_counter() - started
    print(f"api_key={account.api_key}", flush=True)
    print(f"list_id={audience.id}", flush=True)
    print(f"seeded={args.seed_members} in {seconds:.1f}s", flush=True)
    print(f"api_url=http://{args.host}:{args.port}/3.0", flush=True)
    uvicorn.run(
        create_app(simulator),
        host=args.host,
        port=args.port,
        log_level="warning",
        ws="none",
        access_log=False,
    )


if __name__ == "__main__":
    main()
