"""`spanwire qualify`: build a cloud, run the suites, record the verdict in the ledger.

The run is one function with explicit phases so the report can say exactly
where a failure happened; the testbed is always torn down, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from spanwire.errors import Unavailable
from spanwire.qualify import bandwidth, cloud, failover, underlay, vm
from spanwire.qualify.connectivity import ProbeResult, run_matrix, start_whoami
from spanwire.qualify.ledger import Ledger, RunRecord
from spanwire.qualify.manifest import collect
from spanwire.qualify.tenant import TenantAPI
from spanwire.qualify.testbed import Testbed
from spanwire.qualify.topology import (
    DEFAULT_GROUP,
    FLOATING_IP,
    OUTSIDE,
    PEER_PORT,
    PUBLIC_GROUP,
    SNAT,
    SUITES,
    TCP_PORT,
    UNDERLAY,
    WEB_GROUP,
    Topology,
    bandwidth_pairs,
    connectivity_matrix,
    default_topology,
    floating_placeholder,
    north_south_matrix,
    resolve,
    snat_placeholder,
)
from spanwire.store.etcd_server import EtcdCluster


@dataclass
class QualifyOptions:
    nodes: int = 3
    store_url: str | None = None
    suites: tuple[str, ...] = SUITES
    state_dir: str = "/var/lib/spanwire/qualify"
    # >0: run the testbed's store on an etcd cluster of this size that qualify
    # starts and stops itself, so the failover suite can kill a member.
    etcd_members: int = 0
    rounds: int = 5
    seconds: int = 2
    # A hook that breaks the data plane after the topology is built (tests only).
    sabotage: Callable[[Testbed, Topology], None] | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Built:
    """What the runner needs of the built topology."""

    namespaces: dict[str, str]  # VM name (and OUTSIDE) → namespace
    addresses: dict[str, str]  # placeholders (floating IPs, per-node SNAT) → addresses


def _build_topology(bed: Testbed, topo: Topology, progress: Progress) -> Built:
    """Provider network, networks, routers, groups, VMs and floating IPs, through the API."""
    groups: dict[tuple[str, str], list[str]] = {}
    if not bed.state.api_url:
        raise Unavailable("qualification creates its topology through the api, which the "
                          "testbed did not start; see the testbed's logs/api.log")
    api = TenantAPI(bed.state.api_url, bed.state.state_dir)
    addresses: dict[str, str] = {}
    try:
        external = bed.state.external_network or api.external_network(
            underlay.EXTERNAL_NETWORK, underlay.PHYSNET, underlay.EXTERNAL_CIDR,
            underlay.OUTSIDE_IP, underlay.EXTERNAL_POOL)
        subnets = {spec.name: api.network(spec.name, spec.project, spec.cidr)
                   for spec in topo.networks}
        router_ids = {
            router.name: api.router(router.name, router.project,
                                    [subnets[n] for n in router.networks],
                                    external_network=external if router.gateway else None)
            for router in topo.routers}
        for project in {v.project for v in topo.vms if v.group == WEB_GROUP}:
            groups[(project, WEB_GROUP)] = [api.web_group(project, TCP_PORT)]
        for project in {v.project for v in topo.vms if v.floating}:
            groups[(project, PUBLIC_GROUP)] = [api.public_group(project)]
        task = progress.add_task("booting VMs (DHCP)", total=len(topo.vms))
        namespaces = {OUTSIDE: underlay.outside_ns(bed.state.prefix)}
        for spec in topo.vms:
            wanted = groups.get((spec.project, spec.group))
            if spec.floating and spec.group == DEFAULT_GROUP:
                wanted = [cloud.default_group(bed.store(), spec.project),
                          *groups[(spec.project, PUBLIC_GROUP)]]
            port, _ = bed.vm_create(spec.network, spec.name, node=spec.node, ip=spec.ip,
                                    security_groups=wanted)
            if spec.floating:
                addresses[floating_placeholder(spec.name)] = api.floating_ip(
                    external, spec.project, port.id)
            namespaces[spec.name] = vm.vm_ns(bed.state.prefix, spec.name)
            start_whoami(namespaces[spec.name], spec.name)
            progress.advance(task)
    finally:
        api.close()
    start_whoami(namespaces[OUTSIDE], "--peer", PEER_PORT)
    addresses |= _node_addresses(bed, topo, router_ids, progress)
    return Built(namespaces, addresses)


def _node_addresses(bed: Testbed, topo: Topology, router_ids: dict[str, str],
                    progress: Progress, timeout: float = 60.0) -> dict[str, str]:
    """Each node's own external address per router, once every agent has claimed it and
    has applied what it needs (so the probes do not race the agents)."""
    wanted: dict[str, set[str]] = {}
    for vm_spec in topo.vms:
        router = topo.uplink(vm_spec)
        if router is not None:
            wanted.setdefault(router.name, set()).add(vm_spec.node)
    task = progress.add_task("north-south: per-node gateways", total=len(wanted))
    found = {}
    for name, nodes in sorted(wanted.items()):
        ports = bed.wait_gateways(router_ids[name], nodes, timeout)
        found |= {snat_placeholder(name, node): ports[node].fixed_ips[0].ip_address
                  for node in nodes}
        progress.advance(task)
    return found


def _connectivity(topo: Topology, built: Built, progress: Progress) -> list[ProbeResult]:
    probes = connectivity_matrix(topo) + resolve(north_south_matrix(topo), built.addresses,
                                                 underlay.OUTSIDE_IP)
    task = progress.add_task("connectivity matrix", total=len(probes))
    return run_matrix(probes, built.namespaces.__getitem__, lambda _r: progress.advance(task))


def _bandwidth(bed: Testbed, topo: Topology, built: Built, opts: QualifyOptions,
               ledger: Ledger, progress: Progress) -> dict[str, Any]:
    prefix = bed.state.prefix
    first, second = sorted(bed.state.nodes)[:2]
    endpoints = {UNDERLAY: bandwidth.Endpoint(underlay.node_ns(prefix, first),
                                              underlay.node_ns(prefix, second),
                                              bed.state.nodes[second])}
    ns = built.namespaces
    for cls, (client, server) in bandwidth_pairs(topo).items():
        endpoints[cls] = bandwidth.Endpoint(ns[client], ns[server], topo.vm(server).ip)
    north_south = _north_south_pairs(topo, second)
    if FLOATING_IP in north_south:  # the outside → a floating IP of a VM on the second node
        server = north_south[FLOATING_IP]
        endpoints[FLOATING_IP] = bandwidth.Endpoint(
            ns[OUTSIDE], ns[server], built.addresses[floating_placeholder(server)])
    if SNAT in north_south:  # a VM without floating IP on the first node → the outside
        endpoints[SNAT] = bandwidth.Endpoint(ns[north_south[SNAT]], ns[OUTSIDE],
                                             underlay.OUTSIDE_IP)
    task = progress.add_task("bandwidth (iperf3, interleaved)",
                             total=opts.rounds * len(endpoints))
    measured = bandwidth.measure(endpoints, opts.rounds, opts.seconds,
                                 lambda _c: progress.advance(task))
    samples = measured.gbps
    underlay_samples = samples.pop(UNDERLAY)
    base = statistics.median(underlay_samples)
    classes = {}
    normalised = {}
    for cls, values in samples.items():
        result = bandwidth.ClassResult(values, steal_shares=measured.steal_shares[cls])
        normalised[cls] = [v / base for v in values]
        result.verdict = bandwidth.against_baseline(normalised[cls], ledger.baseline(cls))
        classes[cls] = result.summary(underlay_samples)
    shares = [x for values in measured.steal_shares.values() for x in values]
    return {"underlay_gbps": underlay_samples, "classes": classes, "normalised": normalised,
            "underlay_steal_shares": measured.steal_shares[UNDERLAY],
            "steal_share_median": statistics.median(shares) if shares else 0.0}


def _north_south_pairs(topo: Topology, fip_node: str) -> dict[str, str]:
    """The VM each north-south bandwidth class uses (see `_bandwidth`)."""
    out: dict[str, str] = {}
    behind = [v for v in topo.vms if topo.uplink(v) is not None and v.group == DEFAULT_GROUP]
    fip = next((v for v in behind if v.floating and v.node == fip_node), None)
    snat = next((v for v in behind if not v.floating), None)
    if fip is not None:
        out[FLOATING_IP] = fip.name
    if snat is not None:
        out[SNAT] = snat.name
    return out


def _failover(bed: Testbed, topo: Topology, built: Built, progress: Progress,
              etcd: EtcdCluster | None) -> list[failover.FailoverResult]:
    nodes = sorted(bed.state.nodes)
    ns = built.namespaces
    alpha = [v for v in topo.vms if v.project == "alpha"]
    src = next((v for v in alpha if v.floating), alpha[0])
    floating_ip = built.addresses.get(floating_placeholder(src.name))
    dst = next(v for v in alpha if v.node != src.node)
    faults: list[tuple[str, Callable[[], None]]] = [
        (f"agent restart on {src.node}", lambda: bed.restart_agent(src.node)),
    ]
    if etcd is not None and len(etcd.members) >= 3:
        faults.append(("etcd member killed (SIGKILL)", lambda: etcd.kill(len(etcd.members) - 1)))
    if "api" in bed.state.pids:
        faults.append(("api replica killed", lambda: bed.kill_api()))
    if len(nodes) >= 3:
        victim = next(n for n in reversed(nodes) if n not in (src.node, dst.node))
        faults.append((f"node {victim} lost (agent and namespaces)",
                       lambda: bed.kill_node(victim)))
    # East-west between two surviving nodes, and north-south from the outside to
    # src's floating IP: neither may notice any fault, a lost node included.
    flows = [(f"{src.name} → {dst.name}", ns[src.name], dst.ip)]
    if floating_ip is not None:
        flows.append((f"outside → {src.name}'s floating IP", ns[OUTSIDE], floating_ip))
    task = progress.add_task("failover", total=len(faults))
    results = []
    for name, action in faults:
        results += failover.under_probes(name, flows, action)
        progress.advance(task)
    return results


def qualify(opts: QualifyOptions, ledger: Ledger, console: Console | None = None
            ) -> dict[str, Any]:
    """Run a whole qualification; return the report document (also recorded in the ledger)."""
    console = console or Console()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    manifest = collect({"nodes": opts.nodes, "tenant_mtu": 1450, **opts.extra_config})
    ledger.register(manifest)
    topo = default_topology([f"node{i}" for i in range(1, opts.nodes + 1)])
    doc: dict[str, Any] = {"nodes": opts.nodes, "store": opts.store_url or "sqlite (embedded)",
                           "suites": list(opts.suites), "started_at": started.isoformat()}
    failures: list[str] = []
    bed: Testbed | None = None
    etcd: EtcdCluster | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        try:
            task = progress.add_task(f"building a {opts.nodes}-node cloud", total=1)
            store_url = opts.store_url
            if opts.etcd_members:
                etcd = EtcdCluster(size=opts.etcd_members).start()
                store_url = etcd.url
                doc["store"] = f"etcd, {opts.etcd_members} members started by qualify"
            bed = Testbed.up(opts.state_dir, nodes=opts.nodes, store_url=store_url)
            doc["testbed_prefix"] = bed.state.prefix
            progress.advance(task)
            built = _build_topology(bed, topo, progress)
            if opts.sabotage is not None:
                opts.sabotage(bed, topo)
            if "connectivity" in opts.suites:
                results = _connectivity(topo, built, progress)
                doc["connectivity"] = {"probes": [r.to_json() for r in results]}
                bad = sorted({r.probe.path_class for r in results if not r.ok})
                failures += [f"connectivity: path class {cls} has failing probes" for cls in bad]
            if "bandwidth" in opts.suites:
                doc["bandwidth"] = _bandwidth(bed, topo, built, opts, ledger, progress)
                for cls, r in doc["bandwidth"]["classes"].items():
                    if (r.get("verdict") or {}).get("outcome") == "FAIL":
                        failures.append(f"bandwidth: {cls} regressed against known-good "
                                        f"({r['verdict']['reason']})")
            if "failover" in opts.suites:
                fo = _failover(bed, topo, built, progress, etcd)
                doc["failover"] = [r.to_json() for r in fo]
                failures += [f"failover: {r.fault} lost {r.lost} packets {r.detail}".strip()
                             for r in fo if not r.ok]
        except Exception as exc:  # noqa: BLE001 - any crash is a failed qualification
            failures.append(f"run aborted: {type(exc).__name__}: {exc}")
        finally:
            if bed is not None:
                task = progress.add_task("tearing down", total=1)
                with contextlib.suppress(Exception):
                    bed.down()
                progress.advance(task)
            if etcd is not None:
                etcd.stop()
    passed = not failures
    doc["passed"] = passed
    doc["failures"] = failures
    doc["duration_s"] = time.monotonic() - t0
    normalised = doc.get("bandwidth", {}).pop("normalised", {})
    complete = passed and set(opts.suites) == set(SUITES)
    run = RunRecord(id=str(uuid.uuid4()), snapshot_id=manifest.id, started_at=started.isoformat(),
                    passed=passed, summary={"failures": failures, "complete": complete},
                    bandwidth=normalised)
    # Only a full pass of every suite counts toward promotion; a failure always counts.
    if complete or not passed:
        record = ledger.record_run(run)
    else:
        record = ledger.get(manifest.id)
    doc["snapshot"] = {"id": manifest.id, "state": record.state.value,
                       "manifest": manifest.to_json(), "known_good": ledger.known_good()}
    return doc

