"""What the Mailchimp simulator saw, for tests in any folder."""

from __future__ import annotations

from collections import Counter

from sim.mailchimp import Simulator


def posted_operation_ids(simulator: Simulator) -> Counter[str]:
    """How often each operation id reached the simulator, across every batch it received."""
    seen: Counter[str] = Counter()
    with simulator.lock:
        for account in simulator.accounts.values():
            for batch in account.batches.values():
                seen.update(str(op.operation_id) for op in batch.operations)
    return seen
