"""The in-memory kernel of the root-free planner tests: the agent's own effect model.

`spanwire.agent.effects` is what the agent uses to track its kernel without
reading it back; testing plans against the same model keeps the two honest.
"""

from spanwire.agent.effects import Announcement, Run, SimError, execute, run

__all__ = ["Announcement", "Run", "SimError", "execute", "run"]
