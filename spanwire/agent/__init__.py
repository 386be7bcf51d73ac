"""The node agent: desired view → plan → apply, driven by store watches."""
