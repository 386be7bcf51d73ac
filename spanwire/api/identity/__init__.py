"""A minimal Keystone v3: enough for keystoneauth, python-openstackclient and openstacksdk.

Users, projects and role assignments live in the store, like every other
object, so any API replica can issue or validate any token.
"""
