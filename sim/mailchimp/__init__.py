"""A Mailchimp Marketing API v3 simulator for the audience sync's tests and demo.

`Simulator` holds the state (usable in-process); `run_in_thread` serves it over HTTP.
"""

from sim.mailchimp.server import RunningSimulator, run_in_thread
from sim.mailchimp.simulator import Fault, Simulator, Switches

__all__ = ["Fault", "RunningSimulator", "Simulator", "Switches", "run_in_thread"]
