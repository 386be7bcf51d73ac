"""The security-group table of one routing namespace, and stale tables of older agents.

The table is compared by digest only (`plan_ruleset`), so a restarted agent
that finds the kernel right issues no nft write; while the agent runs, it
remembers the compiled table it applied last (`security_applied`), so a
change is one incremental transaction of the fragments that differ. Tables a previous agent
version owned (`STALE_TABLES`) are deleted after the current table is in
place, so a port is never left unfiltered during the switch.
"""

from __future__ import annotations

from spanwire.agent.plan.nft_table import ApplyRuleset, RulesetChange, plan_ruleset
from spanwire.agent.state import RoutingNs

TABLE = "spanwire"
# The interim anti-spoofing table (agent/firewall.py, removed): its job is part of TABLE now.
STALE_TABLES = ("spanwire_ps",)


def plan(d: RoutingNs, a: RoutingNs) -> list[ApplyRuleset]:
    """Ops turning `a`'s nft tables into `d`'s; none when `d` was computed without groups."""
    if not d.security_managed:
        return []
    ops: list[ApplyRuleset] = []
    if d.security is None:
        if TABLE in a.nft_tables or a.security_digest is not None:
            ops.append(ApplyRuleset(d.name, RulesetChange.DELETE, table=TABLE))
    else:
        # A table without a readable digest is treated as absent: replaced whole.
        ops += plan_ruleset(d.name, d.security, a.security_digest, a.security_applied)
    ops += [ApplyRuleset(d.name, RulesetChange.DELETE, table=t)
            for t in STALE_TABLES if t in a.nft_tables]
    return ops
