"""A whole cloud on one machine: underlay, node namespaces, store, api, agents, VMs.

Everything it creates is named with a per-run prefix ("sw" + 6 hex) and
recorded in `<state_dir>/testbed.json` *before* it is created, so `down` can
remove it all — also after a crash, and as often as it is called.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from spanwire.dataplane import netns, process
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import Conflict, NotFound, SpanwireError, Unavailable
from spanwire.model import Node, NodeLiveness, Port, PortStatus
from spanwire.qualify import underlay, vm
from spanwire.store import Store, connect

log = logging.getLogger("spanwire.qualify.testbed")
STATE_FILE = "testbed.json"


@dataclass
class TestbedState:
    __test__ = False  # not a pytest class

    prefix: str
    state_dir: str
    store_url: str
    nodes: dict[str, str] = field(default_factory=dict)  # name -> underlay ip
    pids: dict[str, int] = field(default_factory=dict)  # "agent-node1"/"api" -> pid
    api_url: str = ""
    files: list[str] = field(default_factory=list)  # files/dirs we created
    vms: dict[str, dict[str, str]] = field(default_factory=dict)
    made_state_dir: bool = False
    external_network: str = ""  # id of the provider network "public", made by `up`

    def save(self) -> None:
        path = os.path.join(self.state_dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: str) -> TestbedState | None:
        try:
            with open(os.path.join(state_dir, STATE_FILE)) as handle:
                return cls(**json.load(handle))
        except FileNotFoundError:
            return None


class Testbed:
    """Build (`up`), use, and tear down (`down`) a one-machine cloud."""

    __test__ = False  # not a pytest class

    def __init__(self, state: TestbedState) -> None:
        self.state = state
        self.kernel = Kernel()
        self._store: Store | None = None

    # -- construction -------------------------------------------------------

    @classmethod
    def up(cls, state_dir: str, nodes: int = 3, store_url: str | None = None,
           api: bool = True, wait: float = 60.0) -> Testbed:
        made_dir = not os.path.exists(state_dir)
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        existing = TestbedState.load(state_dir)
        if existing is not None:
            raise Conflict(f"a testbed ({existing.prefix}) is already up in {state_dir}; "
                           "run `spanwire down` first")
        prefix = "sw" + secrets.token_hex(3)
        created: list[str] = []
        if store_url is None:
            store_url = f"sqlite://{os.path.join(state_dir, 'state.db')}"
            created.append(os.path.join(state_dir, "state.db"))
        state = TestbedState(prefix=prefix, state_dir=state_dir, store_url=store_url,
                             files=created + [os.path.join(state_dir, d) for d in ("run", "logs")],
                             made_state_dir=made_dir)
        state.save()
        bed = cls(state)
        try:
            bed._build(nodes, api)
            bed.wait_ready(wait)
            if bed.state.api_url:
                bed._provider_network()
        except BaseException:
            bed.down()
            raise
        return bed

    def _build(self, count: int, api: bool) -> None:
        st = self.state
        for sub in ("run", "logs"):
            os.makedirs(os.path.join(st.state_dir, sub), exist_ok=True)
        underlay.build_underlay(self.kernel, st.prefix)
        underlay.build_outside(self.kernel, st.prefix)
        store = self.store()
        for index in range(1, count + 1):
            name = f"node{index}"
            ip = underlay.build_node(self.kernel, st.prefix, name, index)
            st.nodes[name] = ip
            st.save()
            node = Node(id=name, underlay_ip=ip, netns=underlay.node_ns(st.prefix, name),
                        provider_mappings={underlay.PHYSNET: underlay.PROVIDER_IFACE})
            store.put(node.key, node.to_bytes())
        if api:
            self._start_api()
        for name in st.nodes:
            self.start_agent(name)

    def _start_api(self) -> None:
        try:
            import spanwire.cli.serve  # noqa: F401
        except ImportError:
            log.warning("event=api_skipped reason=spanwire.cli.serve is not available")
            return
        from spanwire.qualify import cloud

        cloud.start_api(self)

    def _provider_network(self) -> None:
        """The flat external network every node is wired to, as an operator would create it,
        so tenants can give their routers a gateway and take floating IPs at once."""
        from spanwire.qualify.tenant import TenantAPI

        api = TenantAPI(self.state.api_url, self.state.state_dir)
        try:
            self.state.external_network = api.external_network(
                underlay.EXTERNAL_NETWORK, underlay.PHYSNET, underlay.EXTERNAL_CIDR,
                underlay.OUTSIDE_IP, underlay.EXTERNAL_POOL)
        finally:
            api.close()
        self.state.save()

    def store(self) -> Store:
        if self._store is None:
            self._store = connect(self.state.store_url)
        return self._store

    # -- agents -------------------------------------------------------------

    def agent_argv(self, node: str) -> list[str]:
        return [sys.executable, "-m", "spanwire.agent", "--store",
                self.state.store_url, "--node", node, "--run-dir",
                os.path.join(self.state.state_dir, "run", node)]

    def start_agent(self, node: str) -> int:
        log_path = os.path.join(self.state.state_dir, "logs", f"agent-{node}.log")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(self.agent_argv(node), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._children = getattr(self, "_children", {})
        self._children[node] = proc
        self.state.pids[f"agent-{node}"] = proc.pid
        self.state.save()
        return proc.pid

    def stop_agent(self, node: str, timeout: float = 10.0) -> None:
        pid = self.state.pids.pop(f"agent-{node}", 0)
        self.state.save()
        child = getattr(self, "_children", {}).pop(node, None)
        _terminate(pid, child, timeout)

    def restart_agent(self, node: str) -> int:
        self.stop_agent(node)
        return self.start_agent(node)

    def restart_agent_first_pass(self, node: str, timeout: float = 30.0) -> int:
        """Restart the node's agent and return the op count of the new agent's first pass.

        Passes are counted once the old agent has exited: a pass it was still
        finishing when asked to stop is never taken for the new agent's.
        """
        self.stop_agent(node)
        before = len(self.reconciles(node))
        self.start_agent(node)
        return self.wait_reconciles(node, before + 1, timeout)[before]

    def agent_log(self, node: str) -> str:
        return os.path.join(self.state.state_dir, "logs", f"agent-{node}.log")

    def reconciles(self, node: str) -> list[int]:
        """Op counts of every reconcile pass the node's agent logged, oldest first."""
        counts = []
        with contextlib.suppress(FileNotFoundError), open(self.agent_log(node)) as handle:
            for line in handle:
                if "event=reconciled" in line:
                    counts.append(int(line.split(" ops=")[1].split()[0]))
        return counts

    def wait_reconciles(self, node: str, count: int, timeout: float = 30.0) -> list[int]:
        """Until the node's agent has logged at least `count` reconcile passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.reconciles(node)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise Unavailable(f"agent on {node} did not reconcile; see {self.agent_log(node)}")

    def pending_ops(self, node: str) -> list[object]:
        """What the node's agent would still have to do (read-only: store + kernel)."""
        from spanwire.agent import actual, desired
        from spanwire.agent.cache import ModelCache
        from spanwire.agent.plan import plan

        cache = ModelCache()
        cache.load(self.store())
        want = desired.compute(cache.nodes[node], cache.nodes, cache.networks, cache.subnets,
                               cache.ports, os.path.join(self.state.state_dir, "run", node),
                               groups=cache.security_view(), router_objects=cache.routers,
                               floating_ips=cache.floating_ips)
        keys = {n: frozenset(k for k, _ in r.sysctls) for n, r in want.namespaces.items()}
        have = actual.read(self.kernel, want.node_ns, os.path.join(self.state.state_dir, "run",
                                                                    node), keys)
        return list(plan(want, have))

    def settle(self, timeout: float = 30.0) -> None:
        """Until every node's agent has applied everything (its planner has nothing left)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pending = {n: self.pending_ops(n) for n in sorted(self.state.nodes)}
            except SpanwireError as exc:  # a namespace went while we read it: agents busy
                pending = {"read": [exc]}
            if not any(pending.values()):
                return
            if time.monotonic() > deadline:
                raise Unavailable(f"agents did not converge in {timeout} s: {pending}")
            time.sleep(0.2)

    def wait_gateways(self, router_id: str, nodes: set[str], timeout: float = 60.0
                      ) -> dict[str, Port]:
        """Until each of `nodes` has claimed its own gateway port of `router_id` and every
        agent has applied everything; returns node → that port."""
        from spanwire.qualify import cloud

        deadline = time.monotonic() + timeout
        while not nodes <= set(found := cloud.gateway_ports(self.store(), router_id)):
            if time.monotonic() > deadline:
                raise Unavailable(f"router {router_id}: gateways claimed on {sorted(found)}, "
                                  f"want {sorted(nodes)}")
            time.sleep(0.1)
        self.settle(max(1.0, deadline - time.monotonic()))
        return found

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every node's agent has put its liveness key."""
        deadline = time.monotonic() + timeout
        store = self.store()
        while time.monotonic() < deadline:
            alive = {kv.key for kv in store.range(NodeLiveness.prefix()).items}
            if all(NodeLiveness.key_of(n) in alive for n in self.state.nodes):
                return
            time.sleep(0.1)
        dead = sorted(n for n in self.state.nodes if NodeLiveness.key_of(n) not in alive)
        tails = []
        for node in dead:  # the logs go with `down`, so say what they said now
            with contextlib.suppress(OSError), open(self.agent_log(node)) as handle:
                tails.append(f"agent-{node}: " + " | ".join(handle.read().splitlines()[-4:]))
        raise Unavailable(f"agents of {', '.join(dead)} not live after {timeout} s; "
                          + "; ".join(tails))

    # -- VMs ----------------------------------------------------------------

    def wait_port_active(self, port_ids: list[str], timeout: float = 30.0) -> None:
        store = self.store()
        deadline = time.monotonic() + timeout
        pending = set(port_ids)
        while pending and time.monotonic() < deadline:
            for port_id in list(pending):
                kv = store.get(PortStatus.key_of(port_id))
                if kv is not None and PortStatus.from_bytes(kv.value).status == "ACTIVE":
                    pending.discard(port_id)
            if pending:
                time.sleep(0.02)
        if pending:
            raise Unavailable(f"ports not ACTIVE after {timeout} s: {sorted(pending)}")

    def vm_create(self, network: str, name: str, node: str | None = None,
                  dhcp: bool = True, ip: str | None = None,
                  security_groups: list[str] | None = None) -> tuple[Port, vm.Lease | None]:
        """Create a port (api or store), the VM namespace, and run its DHCP client."""
        from spanwire.qualify import cloud

        if name in self.state.vms:
            raise Conflict(f"vm {name} already exists")
        nodes = sorted(self.state.nodes)
        node = node or nodes[len(self.state.vms) % len(nodes)]
        if node not in self.state.nodes:
            raise NotFound(f"no node {node}; nodes are {', '.join(nodes)}")
        store = self.store()
        net = cloud.find_network(store, network)
        if self.state.api_url:
            with open(os.path.join(self.state.state_dir, "admin-password")) as handle:
                password = handle.read().strip()
            port = cloud.api_create_port(self.state.api_url, password, net, node, name, ip,
                                          security_groups)
        else:
            port = cloud.add_port(store, net, node, name=name, ip=ip,
                                  security_groups=security_groups)
        self.state.vms[name] = {"node": node, "port": port.id, "network": net.id}
        self.state.save()
        vm.create(self.kernel, self.state.prefix, name, underlay.node_ns(self.state.prefix, node),
                  port.id, port.mac_address)
        self.wait_port_active([port.id])
        lease = vm.dhcp(self.state.prefix, name, os.path.join(self.state.state_dir, "run"))\
            if dhcp else None
        return port, lease

    def vm_delete(self, name: str) -> None:
        info = self.state.vms.pop(name, None)
        if info is None:
            raise NotFound(f"no vm {name}")
        self.state.save()
        vm.delete(self.kernel, self.state.prefix, name)
        self.store().delete(Port.key_of(info["port"]))

    def vm_exec(self, name: str, argv: list[str], timeout: float = 60.0
                ) -> subprocess.CompletedProcess[str]:
        if name not in self.state.vms:
            raise NotFound(f"no vm {name}")
        return vm.exec_(self.state.prefix, name, argv, timeout=timeout)

    def outside_exec(self, argv: list[str], timeout: float = 60.0
                     ) -> subprocess.CompletedProcess[str]:
        """Run `argv` on the outside host (the provider network's far end)."""
        return process.run(underlay.outside_ns(self.state.prefix), argv, timeout=timeout,
                           check=False)

    # -- faults (the qualify failover suite) ---------------------------------

    def kill_api(self) -> None:
        """SIGKILL the api replica, as a crash would; forwarding must not notice."""
        pid = self.state.pids.pop("api", 0)
        self.state.api_url = ""
        self.state.save()
        _terminate(pid, None, 0.0)

    def kill_node(self, node: str) -> None:
        """Lose a whole node: its agent, its VMs and every namespace it had."""
        self.stop_agent(node)
        for name, info in list(self.state.vms.items()):
            if info["node"] == node:
                vm.delete(self.kernel, self.state.prefix, name)
                self.state.vms.pop(name)
        self.state.save()
        node_ns = underlay.node_ns(self.state.prefix, node)
        underlay.destroy(self.kernel, node_ns)  # its routing namespaces
        process.kill_all_in([node_ns])
        self.kernel.forget(node_ns)
        with contextlib.suppress(OSError):
            netns.remove(node_ns)

    # -- teardown -----------------------------------------------------------

    def down(self) -> list[str]:
        """Remove every process, namespace and file of this testbed (idempotent)."""
        st = self.state
        for node in list(st.nodes):
            if f"agent-{node}" in st.pids:
                self.stop_agent(node)
        for key, pid in list(st.pids.items()):
            _terminate(pid, None, 10.0)
            st.pids.pop(key, None)
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
        removed = underlay.destroy(self.kernel, st.prefix)
        self.kernel.close()
        for path in st.files:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(st.state_dir, STATE_FILE))
        if st.made_state_dir:
            with contextlib.suppress(OSError):
                os.rmdir(st.state_dir)  # only if empty: never remove what we did not make
        return removed

    @classmethod
    def attach(cls, state_dir: str) -> Testbed:
        state = TestbedState.load(state_dir)
        if state is None:
            raise NotFound(f"no testbed in {state_dir}; run `spanwire up` first")
        return cls(state)


def _terminate(pid: int, child: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop one of our background processes, checking it is still a spanwire process."""
    if child is not None:
        process.stop_child(child, timeout)
        return
    if pid <= 0:
        return
    argv = process.cmdline(pid) or ()
    if not any("spanwire" in a for a in argv):
        return  # gone, or the pid was recycled by something that is not ours
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.cmdline(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if process.cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
