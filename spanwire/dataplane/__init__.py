"""The one narrow layer that touches the kernel and spawns processes.

Everything here works *inside named network namespaces only*: every netlink
socket and every sysctl access is checked to be in the namespace it was meant
for, so a bug elsewhere can never reconfigure the host's own network.
"""
