"""An nftables table kept as digest-carrying fragments, and how the kernel's copy is updated.

Why this shape:

- atomic whole-table replacement: a REPLACE transaction creates the table,
  deletes it and builds it again from nothing, all in one `nft -j -f -`
  call, so the kernel goes from the old table to the new one with no window
  in between and nothing stale left behind;
- a digest for hitless restarts: every table carries `<full>-<shape>`
  (with / without set elements) in the comment of a never-jumped-to rule in
  chain `sw-meta`, so a restarted agent compares one short read with what it
  would write and, when equal, writes nothing;
- fragment diffs for incremental updates: a compiled table (`Ruleset`) is a
  list of `Fragment`s, each digested from the inputs that determine it, so
  while the agent runs a change is one transaction of only the fragments
  that differ from the table it applied last (`incremental`), and a change
  of set members only is an element rewrite (SETS).

`plan_ruleset` turns (desired, the kernel's digest, what this agent applied
last) into at most one transaction: nothing (digests equal), an INCREMENTAL
fragment diff, a SETS element rewrite, or a whole-table REPLACE. Tables
compiled as one piece (NAT) are plain documents, `seal`ed with their digest.

What a fragment holds is up to its compiler: a module that builds tables
(`security_groups`) `register`s one per fragment kind. Two kinds mean
something here: the one `skeleton` fragment (base chains and the maps other
fragments add elements to; when it differs, the table is replaced whole), and
`set` fragments (named sets only; when nothing else differs, SETS).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FAMILY = "inet"
META_CHAIN = "sw-meta"
DIGEST_TAG = "spanwire-sg "
_CACHE = 1 << 14  # compiled fragments kept (a few KiB each)
Json = dict[str, Any]


class RulesetChange(enum.StrEnum):
    REPLACE = "replace"  # whole table swapped in one nft transaction
    INCREMENTAL = "incremental"  # only the fragments that differ from the applied table
    SETS = "sets"  # only remote-group memberships changed: set elements rewritten
    DELETE = "delete"  # no port needs filtering here any more
    SEAL = "seal"  # the digest rule alone, rewritten after the change it describes


@dataclass(frozen=True)
class ApplyRuleset:
    """One atomic nft transaction on namespace `ns`; `payload` is the JSON to feed `nft -j -f -`.

    `ruleset`: the table the kernel holds once this op is applied (REPLACE,
    INCREMENTAL, SETS of a compiled `Ruleset`), for the agent to remember as
    applied; None for DELETE and for plain documents (NAT).
    """

    ns: str
    change: RulesetChange
    payload: str = ""
    table: str = "spanwire"
    ruleset: Ruleset | None = field(default=None, compare=False, repr=False)


def canon(value: Any) -> str:
    """`value` as canonical JSON text: equal values, equal bytes (and equal digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def grants_only(payload: str) -> bool:
    """Whether one of our transactions only adds (no delete, flush or replace command): then
    every state on the way to it allows no more than the state it ends in.

    Our transactions are canonical JSON (`canon`) whose commands are objects keyed
    by their verb; no name, element or comment of ours contains a quoted verb.
    """
    return not any(f'"{verb}":' in payload for verb in ("delete", "flush", "replace", "destroy"))


def sha(*parts: str) -> str:
    """The hex sha256 of `parts`, NUL-separated so that no two part lists collide."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Fragment:
    """One independently replaceable part of the table, identified by `(kind, name)`.

    `inputs` determine its commands entirely (hashable; the cache key), and
    `digest` is derived from them; `elem_digest` (sets only) covers the set's
    elements, which `digest` leaves out so a membership change keeps the shape.
    """

    kind: str
    name: str
    inputs: tuple[Any, ...]
    digest: str
    elem_digest: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    @property
    def rank(self) -> int:
        """Where its kind comes in creation order (deletion runs in reverse)."""
        return _KINDS[self.kind].rank


@dataclass(frozen=True)
class Content:
    """A fragment's nft commands, each as canonical JSON text.

    `creates`: its chains, sets and maps; `rules`: (chain, add-rule command);
    `elements`: (map, key, add-element command) it puts into the skeleton's
    maps; `set_elems`: (set, elements) for in-place membership rewrites.
    """

    creates: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()
    elements: tuple[tuple[str, str, str], ...] = ()
    set_elems: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def chain_rules(self, chain: str) -> list[str]:
        return [text for c, text in self.rules if c == chain]


@dataclass(frozen=True)
class _Kind:
    rank: int
    compile: Callable[[Fragment], Content]


_KINDS: dict[str, _Kind] = {}


def register(kind: str, rank: int, compiler: Callable[[Fragment], Content]) -> None:
    """Make `compiler` the one that turns fragments of `kind` into commands.

    Called at import by the module that builds tables of such fragments, so
    this module needs to know none of them. `rank`: the kind's place in
    creation order (sets before the chains that use them, and so on).
    """
    _KINDS[kind] = _Kind(rank, compiler)


def compile_fragment(frag: Fragment) -> Content:
    """A fragment's commands, from the compiler registered for its kind (uncached)."""
    return _KINDS[frag.kind].compile(frag)


@functools.lru_cache(maxsize=_CACHE)
def compiled(frag: Fragment) -> Content:
    """A fragment's commands, compiled once per distinct inputs: in a table of
    1000 ports where one changed, only that port is compiled again."""
    return compile_fragment(frag)


@dataclass(frozen=True, eq=False)
class Ruleset:
    """The compiled table: fragments in creation order and the table digest.

    Equal when table and digest are equal (the digest covers every fragment).
    """

    table: str
    fragments: tuple[Fragment, ...] = field(repr=False)
    digest: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ruleset) and (self.table, self.digest) == (other.table,
                                                                             other.digest)

    def __hash__(self) -> int:
        return hash((self.table, self.digest))

    @functools.cached_property
    def by_key(self) -> dict[tuple[str, str], Fragment]:
        return {f.key: f for f in self.fragments}

    @property
    def shape(self) -> str:
        return self.digest.split("-")[-1]

    def render(self) -> str:
        """The whole-table transaction text for `nft -j -f -`, equal to `canon(document())`.

        The table is (re)created from nothing in the same transaction, so
        applying it is atomic and leaves nothing stale behind.
        """
        t = {"family": FAMILY, "name": self.table}
        contents = [compiled(f) for f in self.fragments]
        parts = [canon({"metainfo": {"json_schema_version": 1}}),
                 canon({"add": {"table": t}}), canon({"delete": {"table": t}}),
                 canon({"add": {"table": t}})]
        parts += [text for c in contents for text in c.creates]
        parts += [text for c in contents for _, text in c.rules]
        parts += [text for c in contents for _, _, text in c.elements]
        parts += [canon({"add": {"chain": ref(self.table, META_CHAIN)}}),
                  canon(_meta_rule(self.table, self.digest))]
        return '{"nftables":[' + ",".join(parts) + "]}"

    def document(self) -> Json:
        """The whole-table nft JSON document (what REPLACE applies), as a dict."""
        doc: Json = json.loads(self.render())
        return doc


def ref(table: str, name: str) -> Json:
    """How nft JSON names a chain, set or map of `table`."""
    return {"family": FAMILY, "table": table, "name": name}


def seal(table: str, cmds: list[Json]) -> Json:
    """A whole-table document for `cmds` (chains, sets, rules of `table`), with its digest.

    For tables compiled as one piece (NAT). The table is (re)created from
    nothing in the same transaction, so applying the document is atomic; the
    digest rule lets a restarted agent tell, with one short read, that the
    kernel already holds exactly this document.
    """
    t = {"family": FAMILY, "name": table}
    head = [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]
    meta = {"add": {"chain": ref(table, META_CHAIN)}}
    doc = {"nftables": [{"metainfo": {"json_schema_version": 1}}, *head, *cmds, meta]}
    doc["nftables"].append(_meta_rule(table, ruleset_digest(doc)))
    return doc


def _meta_rule(table: str, digest: str) -> Json:
    """A never-jumped-to rule whose comment carries the digest the kernel state was built from."""
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": META_CHAIN,
                             "expr": [{"return": None}], "comment": DIGEST_TAG + digest}}}


def _is_meta(cmd: Json) -> bool:
    return cmd.get("add", {}).get("rule", {}).get("chain") == META_CHAIN


def ruleset_digest(doc: Json | Ruleset) -> str:
    """`<full>-<shape>`: digests of the table with and without set elements.
    Equal shapes mean only memberships differ. A `Ruleset` carries its own;
    for a plain document they are sha256 prefixes of it without its digest rule."""
    if isinstance(doc, Ruleset):
        return doc.digest
    cmds = [c for c in doc["nftables"] if not _is_meta(c)]
    sets = [c["add"]["set"] for c in cmds if "set" in c.get("add", {})]
    rest = hashlib.sha256(canon([c for c in cmds if "set" not in c.get("add", {})]).encode())
    shape = rest.copy()
    shape.update(canon([{k: v for k, v in s.items() if k != "elem"} for s in sets]).encode())
    full = shape.copy()
    full.update(canon([s.get("elem", []) for s in sets]).encode())
    return full.hexdigest()[:32] + "-" + shape.hexdigest()[:32]


def _digest_of(doc: Json) -> str:
    """The digest `seal` embedded (not hashed twice), else computed."""
    last = doc["nftables"][-1]
    embedded = digest_from_comment(last["add"]["rule"].get("comment")) if _is_meta(last) else None
    return embedded or ruleset_digest(doc)


def _table_of(doc: Json) -> str:
    return next(c["add"]["table"]["name"] for c in doc["nftables"] if "table" in c.get("add", {}))


def render(doc: Json | Ruleset) -> str:
    """The exact bytes to pipe into `nft -j -f -` (canonical: equal docs, equal bytes)."""
    return doc.render() if isinstance(doc, Ruleset) else canon(doc)


def _set_rewrite(table: str, name: str, elems: Iterable[Any]) -> list[Json]:
    out: list[Json] = [{"flush": {"set": ref(table, name)}}]
    if members := list(elems):
        out.append({"add": {"element": {**ref(table, name), "elem": members}}})
    return out


def _meta_update(table: str, digest: str) -> list[Json]:
    return [{"flush": {"chain": ref(table, META_CHAIN)}}, _meta_rule(table, digest)]


def _set_delta(table: str, name: str, before: Iterable[Any], after: Iterable[Any]) -> list[str]:
    """Element deletions, then additions, turning a set's `before` into `after`.

    Not a flush and a rewrite: with a thousand members that is 7.5 ms of
    nft work against about 3 ms for one added element, and a new member is
    then an addition only.
    """
    before, after = tuple(before), tuple(after)
    try:
        # Plain addresses (every port's): two set differences in C, not a key per element.
        old_set, new_set = frozenset(before), frozenset(after)
    except TypeError:  # a prefix (a dict): elements keyed by their canonical text
        old = {_elem_key(e): e for e in before}
        new = {_elem_key(e): e for e in after}
        gone = [e for k, e in old.items() if k not in new]
        came = [e for k, e in new.items() if k not in old]
    else:
        gone, came = sorted(old_set - new_set), sorted(new_set - old_set)
    out = []
    if gone:
        out.append(canon({"delete": {"element": {**ref(table, name), "elem": gone}}}))
    if came:
        out.append(canon({"add": {"element": {**ref(table, name), "elem": came}}}))
    return out


def _elem_key(elem: Any) -> Any:
    """A set element as something hashable: addresses are plain strings already."""
    return elem if isinstance(elem, str) else canon(elem)


def seal_update(table: str, digest: str) -> str:
    """The transaction rewriting only the digest rule (see `RulesetChange.SEAL`)."""
    return canon({"nftables": [{"metainfo": {"json_schema_version": 1}},
                               *_meta_update(table, digest)]})


def sets_update(doc: Json | Ruleset) -> Json:
    """One transaction rewriting every set's elements and the digest; rules untouched."""
    cmds: list[Json] = [{"metainfo": {"json_schema_version": 1}}]
    if isinstance(doc, Ruleset):
        for frag in doc.fragments:
            for name, elems in compiled(frag).set_elems:
                cmds += _set_rewrite(doc.table, name, elems)
        return {"nftables": [*cmds, *_meta_update(doc.table, doc.digest)]}
    table = _table_of(doc)
    for cmd in doc["nftables"]:
        spec = cmd.get("add", {}).get("set")
        if spec is not None:
            cmds += _set_rewrite(table, spec["name"], spec.get("elem", []))
    return {"nftables": [*cmds, *_meta_update(table, _digest_of(doc))]}


def _remove(table: str, content: Content) -> list[str]:
    """Commands deleting a fragment's own objects (its map elements are gone already)."""
    out = [canon({"flush": {"chain": ref(table, c)}}) for c in content.chains]
    out += [canon({"delete": {"chain": ref(table, c)}}) for c in content.chains]
    out += [canon({"delete": {"set": ref(table, s)}}) for s in content.sets]
    out += [canon({"delete": {"map": ref(table, m)}}) for m in content.maps]
    return out


def _rewrite(table: str, old: Content, new: Content) -> list[str] | None:
    """Commands turning fragment content `old` into `new` in place; None if it cannot be."""
    if (old.chains, old.sets, old.maps) != (new.chains, new.sets, new.maps):
        return None
    out: list[str] = []
    for (name, elems), (_, before) in zip(new.set_elems, old.set_elems, strict=True):
        if elems != before:
            out += _set_delta(table, name, before, elems)
    for chain in new.chains:
        rules = new.chain_rules(chain)
        if rules != old.chain_rules(chain):
            out += [canon({"flush": {"chain": ref(table, chain)}}), *rules]
    return out


def incremental(applied: Ruleset, desired: Ruleset) -> tuple[RulesetChange, str] | None:
    """One transaction turning the kernel's `applied` table into `desired`, fragment by fragment.

    Order: objects are created (sets, group chains, port chains) and changed
    ones rewritten in place before anything refers to them; then map elements
    of removed or changed ports are deleted and those of new ones added (their
    chains exist by then); then removed chains (ports before the group chains
    they jump to) and sets are flushed and deleted; finally the digest rule is
    rewritten (by a separate SEAL transaction, see `plan_ruleset`). SETS when
    only set elements changed; None when the skeleton or table differ (a whole
    replacement is needed).
    """
    table = desired.table
    old, new = applied.by_key, desired.by_key
    skeleton = ("skeleton", "skeleton")
    if applied.table != table or skeleton not in old or \
            old[skeleton].digest != new[skeleton].digest:
        return None
    create: list[str] = []
    elem_del: list[tuple[str, str]] = []
    elem_add: list[str] = []
    only_sets = True
    for key, frag in new.items():
        before = old.get(key)
        if before is frag:
            continue  # remembered fragments: most are the very same object
        if before is not None and (before.digest, before.elem_digest) == (frag.digest,
                                                                          frag.elem_digest):
            continue
        only_sets = only_sets and frag.kind == "set"
        content = compiled(frag)
        if before is None:
            create += [*content.creates, *(text for _, text in content.rules)]
            elem_add += [text for _, _, text in content.elements]
            continue
        prior = compiled(before)
        step = _rewrite(table, prior, content)
        if step is None:
            return None
        create += step
        if prior.elements != content.elements:
            gone, came = set(prior.elements), set(content.elements)
            elem_del += [(m, k) for m, k, t in prior.elements if (m, k, t) not in came]
            elem_add += [t for m, k, t in content.elements if (m, k, t) not in gone]
    removed = [frag for key, frag in old.items() if key not in new]
    only_sets = only_sets and all(f.kind == "set" for f in removed)
    drop: list[str] = []
    for frag in sorted(removed, key=lambda f: (-f.rank, f.name)):
        content = compiled(frag)
        elem_del += [(m, k) for m, k, _ in content.elements]
        drop += _remove(table, content)
    parts = [canon({"metainfo": {"json_schema_version": 1}}), *create]
    parts += [canon({"delete": {"element": {**ref(table, m), "elem": [k]}}})
              for m, k in elem_del]
    parts += [*elem_add, *drop]
    kind = RulesetChange.SETS if only_sets else RulesetChange.INCREMENTAL
    return kind, '{"nftables":[' + ",".join(parts) + "]}"


def plan_ruleset(ns: str, desired: Json | Ruleset | None, actual_digest: str | None,
                 applied: Ruleset | None = None) -> list[ApplyRuleset]:
    """At most one transaction: none when the kernel already holds `desired` (hitless
    restart); the fragment diff when the kernel holds `applied` (what this agent
    wrote last); a set-element update when only memberships changed; otherwise
    one atomic table replacement."""
    if desired is None:
        return [] if actual_digest is None else [ApplyRuleset(ns, RulesetChange.DELETE)]
    if not isinstance(desired, Ruleset):
        table, want = _table_of(desired), _digest_of(desired)
        if actual_digest == want:
            return []
        if actual_digest and actual_digest.split("-")[-1] == want.split("-")[-1]:
            return [ApplyRuleset(ns, RulesetChange.SETS, render(sets_update(desired)), table)]
        return [ApplyRuleset(ns, RulesetChange.REPLACE, render(desired), table)]
    table = desired.table
    if actual_digest == desired.digest:
        return []
    if isinstance(applied, Ruleset) and actual_digest is not None and \
            applied.digest == actual_digest:
        step = incremental(applied, desired)
        if step is not None:
            # The digest goes in a transaction of its own, which the planner puts
            # after the namespace's other ops: rewriting it costs nft a fetch of
            # the table (7 to 11 ms with a thousand ports), which a port coming
            # up need not wait for. An agent that dies in between finds a stale
            # digest and replaces the table whole: never wrong, only slower.
            return [ApplyRuleset(ns, step[0], step[1], table, desired),
                    ApplyRuleset(ns, RulesetChange.SEAL, seal_update(table, desired.digest),
                                 table, desired)]
    if actual_digest and actual_digest.split("-")[-1] == desired.shape:
        return [ApplyRuleset(ns, RulesetChange.SETS, render(sets_update(desired)), table,
                             desired)]
    return [ApplyRuleset(ns, RulesetChange.REPLACE, desired.render(), table, desired)]


def digest_from_comment(comment: str | None) -> str | None:
    """The digest stored in the meta rule's comment (as read back by `dataplane.nft`)."""
    if comment and comment.startswith(DIGEST_TAG):
        return comment[len(DIGEST_TAG):]
    return None


__all__ = ["DIGEST_TAG", "FAMILY", "META_CHAIN", "ApplyRuleset", "Content", "Fragment", "Json",
           "Ruleset", "RulesetChange", "canon", "compile_fragment", "compiled",
           "digest_from_comment", "grants_only", "incremental", "plan_ruleset", "ref", "register",
           "render", "ruleset_digest", "seal", "seal_update", "sets_update", "sha"]
