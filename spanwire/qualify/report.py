"""Qualification reports: the JSON document is the truth; tables and HTML render it.

Keeping one machine-readable document and deriving the human views from it
means the terminal, the HTML page and a CI job can never disagree.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spanwire.qualify import steal

OK, BAD = "[green]✔[/]", "[bold red]✘[/]"


def _connectivity_rows(doc: dict[str, Any]) -> list[tuple[str, int, int, list[str]]]:
    """(path class, passed, total, failing labels) per class."""
    rows: dict[str, tuple[int, int, list[str]]] = {}
    for probe in doc.get("connectivity", {}).get("probes", []):
        passed, total, bad = rows.get(probe["path_class"], (0, 0, []))
        ok = probe["ok"]
        rows[probe["path_class"]] = (
            passed + ok,
            total + 1,
            bad if ok else [*bad, f"{probe['label']}: {probe['detail']}"],
        )
    return [(cls, p, t, bad) for cls, (p, t, bad) in rows.items()]


def render_console(doc: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    conn = Table(title="connectivity: expected vs observed")
    for col in ("path class", "result", "probes", "first failures"):
        conn.add_column(col)
    for cls, passed, total, bad in _connectivity_rows(doc):
        conn.add_row(cls, OK if passed == total else BAD, f"{passed}/{total}", "\n".join(bad[:3]))
    for cls, why in doc.get("connectivity", {}).get("not_run", {}).items():
        conn.add_row(cls, "[yellow]not run[/]", "—", why)
    console.print(conn)

    bw = doc.get("bandwidth", {})
    if bw:
        table = Table(title="bandwidth (iperf3 TCP), ratio to the raw underlay in the same run")
        for col in ("path class", "median Gbit/s", "ratio", "95% CI", "samples", "CPU stolen",
                    "vs known-good"):
            table.add_column(col)
        for cls, r in bw.get("classes", {}).items():
            verdict = r.get("verdict")
            vtext = "—" if verdict is None else verdict["outcome"]
            table.add_row(
                cls,
                f"{r['median_gbps']:.2f}",
                f"{r['ratio']:.3f}",
                f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                str(len(r["samples_gbps"])),
                _stolen(r),
                vtext,
            )
        console.print(table)
        noisy = _noisy(doc)
        if noisy:
            console.print(f"[yellow]{noisy}[/]")

    fo = doc.get("failover", [])
    if fo:
        table = Table(title="failover: outage seen by a 100 packets/s probe")
        for col in ("fault", "sent", "lost", "outage ms", "result"):
            table.add_column(col)
        for r in fo:
            table.add_row(r["fault"], str(r["sent"]), str(r["lost"]), f"{r['outage_ms']:.0f}",
                          OK if r["ok"] else BAD)
        console.print(table)

    snap = doc.get("snapshot", {})
    verdict = "[bold green]PASSED[/]" if doc.get("passed") else "[bold red]FAILED[/]"
    console.print(
        f"qualification {verdict} in {doc.get('duration_s', 0):.0f} s — snapshot "
        f"[bold]{snap.get('id', '?')}[/] is now [bold]{snap.get('state', '?')}[/]"
    )
    for failure in doc.get("failures", []):
        console.print(f"  {BAD} {failure}")


def _stolen(row: dict[str, Any]) -> str:
    """Median share of a class's sample CPU time the hypervisor took (older reports: —)."""
    shares = row.get("steal_shares")
    return f"{100 * statistics.median(shares):.0f}%" if shares else "—"


def _noisy(doc: dict[str, Any]) -> str:
    """A warning when the hypervisor took a noticeable share of the bandwidth samples' CPU."""
    share = doc.get("bandwidth", {}).get("steal_share_median", 0.0)
    if share <= steal.NOISY_SHARE:
        return ""
    return (f"the hypervisor took {100 * share:.0f}% of the CPU time of a typical bandwidth "
            "sample: this run's ratios and verdicts are noisier than usual")


def _plot_png(doc: dict[str, Any]) -> str | None:
    """Bandwidth per path class against the raw underlay, as a base64 PNG."""
    classes = doc.get("bandwidth", {}).get("classes", {})
    underlay = doc.get("bandwidth", {}).get("underlay_gbps", [])
    if not classes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["raw underlay", *classes]
    data = [underlay, *(c["samples_gbps"] for c in classes.values())]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_ylabel("Gbit/s")
    ax.set_title("TCP throughput per path class (interleaved samples)")
    ax.grid(axis="y", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(doc: dict[str, Any]) -> str:
    """A self-contained page: summary, matrix, bandwidth plot, failover, raw JSON."""
    esc = html.escape
    passed = doc.get("passed")
    rows = "".join(
        f"<tr class={'ok' if p == t else 'bad'}><td>{esc(c)}</td><td>{p}/{t}</td>"
        f"<td>{'<br>'.join(esc(b) for b in bad[:5])}</td></tr>"
        for c, p, t, bad in _connectivity_rows(doc)
    )
    rows += "".join(
        f"<tr class=skip><td>{esc(c)}</td><td>not run</td><td>{esc(w)}</td></tr>"
        for c, w in doc.get("connectivity", {}).get("not_run", {}).items()
    )
    bw_rows = "".join(
        f"<tr><td>{esc(c)}</td><td>{r['median_gbps']:.2f}</td><td>{r['ratio']:.3f}</td>"
        f"<td>[{r['ci_low']:.3f}, {r['ci_high']:.3f}]</td><td>{_stolen(r)}</td>"
        f"<td>{esc((r.get('verdict') or {}).get('outcome', '—'))}</td></tr>"
        for c, r in doc.get("bandwidth", {}).get("classes", {}).items()
    )
    noisy = _noisy(doc)
    bw_note = f"<p><b>{esc(noisy)}</b></p>" if noisy else ""
    fo_rows = "".join(
        f"<tr class={'ok' if r['ok'] else 'bad'}><td>{esc(r['fault'])}</td><td>{r['sent']}</td>"
        f"<td>{r['lost']}</td><td>{r['outage_ms']:.0f}</td></tr>"
        for r in doc.get("failover", [])
    )
    png = _plot_png(doc)
    plot = f'<img alt="bandwidth plot" src="data:image/png;base64,{png}">' if png else ""
    snap = doc.get("snapshot", {})
    failures = "".join(f"<li>{esc(f)}</li>" for f in doc.get("failures", []))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>spanwire qualification {esc(snap.get('id', ''))}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em}}
.ok td:first-child{{border-left:4px solid #2a2}}.bad td:first-child{{border-left:4px solid #c22}}
.skip{{color:#888}}h1 span{{color:{'#2a2' if passed else '#c22'}}}</style></head><body>
<h1>Qualification <span>{'PASSED' if passed else 'FAILED'}</span></h1>
<p>snapshot <b>{esc(snap.get('id', '?'))}</b> → <b>{esc(snap.get('state', '?'))}</b>;
{doc.get('nodes', '?')} nodes on {esc(str(doc.get('store', '?')))};
{doc.get('duration_s', 0):.0f} s.</p><ul>{failures}</ul>
<h2>Connectivity</h2><table><tr><th>path class</th><th>probes</th><th>failures</th></tr>
{rows}</table>
<h2>Bandwidth</h2>{plot}{bw_note}<table><tr><th>path class</th><th>median Gbit/s</th>
<th>ratio</th><th>95% CI</th><th>CPU stolen</th><th>vs known-good</th></tr>{bw_rows}</table>
<h2>Failover</h2><table><tr><th>fault</th><th>sent</th><th>lost</th><th>outage ms</th></tr>
{fo_rows}</table>
<h2>Manifest</h2><pre>{esc(json.dumps(snap.get('manifest', {}), indent=2))}</pre>
</body></html>"""


def write(doc: dict[str, Any], json_path: Path | None, html_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    if html_path is not None:
        html_path.write_text(render_html(doc))
