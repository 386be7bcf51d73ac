"""The stateless API: Neutron v2.0 resources plus a minimal Keystone v3.

Every write is one store transaction whose compares make it safe for any
number of replicas to run on the same store at once.
"""
