"""The per-project `default` security group, created once and race-free.

Neutron creates it on a project's first use with four rules: ingress IPv4 and
IPv6 from members of the same group, egress IPv4 and IPv6 to anywhere. The
index key `default_sg/<project>` is created with Compare.absent in the same
transaction as the group, so two replicas cannot create two defaults.
"""

from __future__ import annotations

import hashlib
import threading

from spanwire.api import repo
from spanwire.api.kvcache import KVCache
from spanwire.model import SecurityGroup, SecurityGroupRule
from spanwire.store import keys
from spanwire.store.base import Compare, Put, Store

_known: dict[str, str] = {}
_lock = threading.Lock()


def default_index_key(project: str) -> str:
    return keys.key("default_sg", project)


def fingerprint_key(rule: SecurityGroupRule) -> str:
    """One key per distinct rule of a group, so duplicates fail their Compare.absent."""
    parts = (
        rule.direction,
        rule.ethertype,
        rule.protocol,
        rule.port_range_min,
        rule.port_range_max,
        rule.remote_ip_prefix,
        rule.remote_group_id,
    )
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    return keys.key("sg_rule_fp", rule.security_group_id, digest)


def default_rules(group: SecurityGroup) -> list[SecurityGroupRule]:
    rules = []
    for ethertype in ("IPv4", "IPv6"):
        rules.append(
            SecurityGroupRule(
                project_id=group.project_id,
                security_group_id=group.id,
                direction="ingress",
                ethertype=ethertype,
                remote_group_id=group.id,
            )
        )
        rules.append(
            SecurityGroupRule(
                project_id=group.project_id,
                security_group_id=group.id,
                direction="egress",
                ethertype=ethertype,
            )
        )
    return rules


def ensure_default(store: Store, project: str, kv_cache: KVCache | None = None) -> str:
    """The id of `project`'s default group, creating it (with its rules) if missing.

    With `kv_cache` the existence check may be stale; callers that pass one
    compare the group's kv in their own transaction (a deleted group retries).
    """
    with _lock:
        known = _known.get(project)
    getter = kv_cache.get if kv_cache is not None else store.get
    if known is not None and getter(SecurityGroup.key_of(known)) is not None:
        return known
    index = default_index_key(project)
    for _ in range(5):
        kv = store.get(index)
        if kv is not None and store.get(SecurityGroup.key_of(kv.value.decode())) is not None:
            group_id = kv.value.decode()
            break
        group = SecurityGroup(
            project_id=project, name="default", description="Default security group"
        )
        ops = [Put(index, group.id.encode()), Put(group.key, group.to_bytes())]
        for rule in default_rules(group):
            ops += [Put(rule.key, rule.to_bytes()), Put(fingerprint_key(rule), rule.id.encode())]
        compare = Compare.unchanged(kv) if kv is not None else Compare.absent(index)
        if store.txn([compare], ops).succeeded:
            group_id = group.id
            break
    else:
        group_id = repo.check_id(
            store.get(index).value.decode() if store.get(index) else "", "default security group"
        )
    with _lock:
        _known[project] = group_id
    return group_id
