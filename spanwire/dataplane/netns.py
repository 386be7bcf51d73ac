"""Named network namespaces: create, delete, list, and verified entry.

pyroute2 creates netlink sockets in another namespace by forking a helper;
that is ~10 ms, so sockets are cached by `Kernel`. Sysctls are per-namespace
files under /proc/sys/net, which resolve against the *calling thread's*
namespace, so they are read and written from a short-lived thread that has
setns()'d into the target and proved it (inode check) before touching a file.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from spanwire.errors import NotFound, SpanwireError, Unavailable

NETNS_DIR = "/run/netns"
SIOCGSKNS = 0x894C  # ioctl: fd of the namespace a socket belongs to
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class WrongNamespace(SpanwireError):
    """A socket or thread ended up outside the namespace it was opened for; refused."""


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_names(prefix: str = "") -> list[str]:
    """Named namespaces starting with `prefix`, sorted."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def inode(name: str) -> int:
    return os.stat(os.path.join(NETNS_DIR, name)).st_ino


def host_inode() -> int:
    """The namespace this process was started in (the host's, for our daemons)."""
    return os.stat("/proc/self/ns/net").st_ino


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise WrongNamespace(f"refusing namespace name {name!r}")


def create(name: str) -> None:
    """Create `name` if it does not exist (idempotent)."""
    _check_name(name)
    if exists(name):
        return
    from pyroute2 import netns as _netns  # costly import, writers only

    _netns.create(name)


def remove(name: str) -> None:
    """Unmount and unlink `name` (idempotent).

    The kernel destroys the namespace (and the veth/vxlan inside) once no
    process or socket holds it; callers close their sockets first.
    """
    _check_name(name)
    if exists(name):
        from pyroute2 import netns as _netns  # costly import, writers only

        _netns.remove(name)


def socket_inode(fileno: int) -> int:
    """Inode of the namespace a socket lives in."""
    fd = fcntl.ioctl(fileno, SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _enter(name: str) -> None:
    """setns(2) the calling thread into `name` (os.setns arrives only in Python 3.12)."""
    try:
        fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"namespace {name} does not exist") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(name: str, func: Callable[[], T]) -> T:
    """Run `func` in a fresh thread that has entered namespace `name`.

    The thread verifies its own namespace inode before running `func`; the
    thread then exits, so no other thread ever changes namespace.
    """
    _check_name(name)
    try:
        target = inode(name)
    except FileNotFoundError:
        raise NotFound(f"namespace {name} does not exist") from None
    result: dict[str, object] = {}

    def body() -> None:
        try:
            _enter(name)
            mine = os.stat("/proc/thread-self/ns/net").st_ino
            if mine != target or mine == host_inode():
                raise WrongNamespace(f"thread is not in namespace {name}")
            result["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=body, name=f"ns-{name}", daemon=True)
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive():
        raise Unavailable(f"work in namespace {name} did not finish in 30 s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
