"""`spanwire up`, `spanwire down`, `spanwire vm ...`: a whole cloud on one machine."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table

from spanwire.cli.errors import friendly

console = Console()
STATE_DIR = "/var/lib/spanwire"


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly
    def up(
        nodes: int = typer.Option(3, "--nodes", min=1, max=200, help="How many nodes."),
        store: str = typer.Option("", "--store", help="Store URL [default: sqlite in state dir]."),
        state_dir: str = typer.Option(STATE_DIR, "--state-dir", help="Where state lives."),
        api: bool = typer.Option(True, "--api/--no-api", help="Start `spanwire serve`."),
    ) -> None:
        """Build a cloud on this machine (namespaces per node, store, api, agents)."""
        from spanwire.qualify.testbed import Testbed

        with console.status(f"building a {nodes}-node cloud in {state_dir} ..."):
            bed = Testbed.up(state_dir, nodes=nodes, store_url=store or None, api=api)
        st = bed.state
        table = Table(title=f"spanwire testbed {st.prefix}")
        table.add_column("node")
        table.add_column("namespace")
        table.add_column("underlay ip")
        for name, ip in st.nodes.items():
            table.add_row(name, f"{st.prefix}-{name}", ip)
        console.print(table)
        console.print(f"store: {st.store_url}")
        clouds = os.path.join(st.state_dir, "clouds.yaml")
        if st.api_url and os.path.exists(clouds):
            console.print(f"api: {st.api_url}\nclouds.yaml: [bold]{clouds}[/]\n"
                          f"  export OS_CLIENT_CONFIG_FILE={clouds}\n"
                          "  openstack --os-cloud spanwire network create demo\n"
                          "  openstack --os-cloud spanwire subnet create --network demo "
                          "--subnet-range 10.0.0.0/24 demo-v4")
        else:
            console.print("api: not running (spanwire serve unavailable or --no-api)")
        console.print(f"  spanwire vm create --state-dir {st.state_dir} --network demo vm1\n"
                      f"  spanwire vm exec --state-dir {st.state_dir} vm1 -- ip addr\n"
                      f"  spanwire outside --state-dir {st.state_dir} -- ping -c1 FLOATING_IP\n"
                      f"  spanwire down --state-dir {st.state_dir}")
        if st.external_network:
            console.print("provider network: [bold]public[/] (203.0.113.0/24, gateway and "
                          "outside host 203.0.113.1)\n"
                          "  openstack --os-cloud spanwire router create --external-gateway "
                          "public demo-router\n"
                          "  openstack --os-cloud spanwire floating ip create public")

    @app.command()
    @friendly
    def down(
        state_dir: str = typer.Option(STATE_DIR, "--state-dir", help="Where state lives."),
        prefix: str = typer.Option("", "--prefix",
                                   help="Also remove namespaces of this run prefix (swXXXXXX)."),
    ) -> None:
        """Remove every namespace, process and file `up` made (idempotent, crash-safe)."""
        from spanwire.dataplane.kernel import Kernel
        from spanwire.qualify import underlay
        from spanwire.qualify.testbed import Testbed, TestbedState

        removed: list[str] = []
        state = TestbedState.load(state_dir)
        if state is not None:
            removed += Testbed(state).down()
        if prefix:
            if not (prefix.startswith("sw") and len(prefix) == 8):
                raise typer.BadParameter("--prefix must look like sw1a2b3c", param_hint="prefix")
            kernel = Kernel()
            try:
                removed += underlay.destroy(kernel, prefix)
            finally:
                kernel.close()
        console.print(f"removed {len(removed)} namespaces" if removed or state
                      else f"nothing to remove in {state_dir}")

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @friendly
    def outside(
        ctx: typer.Context,
        state_dir: str = typer.Option(STATE_DIR, "--state-dir", help="Where state lives."),
    ) -> None:
        """Run a command on the outside host (203.0.113.1, beyond the provider network):
        spanwire outside -- CMD ..."""
        from spanwire.qualify.testbed import Testbed

        argv = [a for a in ctx.args if a != "--"]
        if not argv:
            raise typer.BadParameter("give a command after --, e.g. -- ping -c1 203.0.113.10",
                                     param_hint="CMD")
        proc = Testbed.attach(state_dir).outside_exec(argv, timeout=3600)
        typer.echo(proc.stdout, nl=False)
        if proc.stderr:
            typer.echo(proc.stderr, nl=False, err=True)
        raise typer.Exit(proc.returncode)

    vm = typer.Typer(help="Testbed VMs (namespaces with a DHCP client).", no_args_is_help=True)
    app.add_typer(vm, name="vm")

    @vm.command("create")
    @friendly
    def vm_create(
        name: str = typer.Argument(..., help="VM name."),
        network: str = typer.Option(..., "--network", help="Network name or id."),
        node: str = typer.Option("", "--node", help="Node to run on [default: round robin]."),
        state_dir: str = typer.Option(STATE_DIR, "--state-dir"),
    ) -> None:
        """Boot a VM: a port, a namespace plugged into it, and DHCP."""
        from spanwire.qualify.testbed import Testbed

        bed = Testbed.attach(state_dir)
        port, lease = bed.vm_create(network, name, node=node or None)
        assert lease is not None
        console.print(f"vm {name} on {bed.state.vms[name]['node']}: port {port.id} "
                      f"ip {lease.ip}/{lease.mask} gw {lease.router} mtu {lease.mtu}")

    @vm.command("exec", context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})
    @friendly
    def vm_exec(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="VM name."),
        state_dir: str = typer.Option(STATE_DIR, "--state-dir"),
    ) -> None:
        """Run a command inside a VM: spanwire vm exec NAME -- CMD ..."""
        from spanwire.qualify.testbed import Testbed

        argv = [a for a in ctx.args if a != "--"]
        if not argv:
            raise typer.BadParameter("give a command after --", param_hint="CMD")
        proc = Testbed.attach(state_dir).vm_exec(name, argv, timeout=3600)
        typer.echo(proc.stdout, nl=False)
        if proc.stderr:
            typer.echo(proc.stderr, nl=False, err=True)
        raise typer.Exit(proc.returncode)

    @vm.command("delete")
    @friendly
    def vm_delete(name: str, state_dir: str = typer.Option(STATE_DIR, "--state-dir")) -> None:
        """Delete a VM and its port."""
        from spanwire.qualify.testbed import Testbed

        Testbed.attach(state_dir).vm_delete(name)

    @vm.command("list")
    @friendly
    def vm_list(state_dir: str = typer.Option(STATE_DIR, "--state-dir")) -> None:
        """List the testbed's VMs."""
        from spanwire.qualify.testbed import Testbed

        bed = Testbed.attach(state_dir)
        table = Table()
        for col in ("vm", "node", "port", "network"):
            table.add_column(col)
        for name, info in sorted(bed.state.vms.items()):
            table.add_row(name, info["node"], info["port"], info["network"])
        console.print(table)
