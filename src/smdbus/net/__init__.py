"""Network events: the Secure Streams policy, captive portal detection, the routing table.

``policy`` loads and validates the policy document; ``cpd`` probes for a
captive portal and publishes the result; ``routetable`` is the sans-IO
routing cache and ``routes`` feeds it from rtnetlink (pyroute2); ``gates``
are the state-manager notifiers that hold the boot for them. httpx and
pyroute2 are imported only by the modules that need them (the ``net`` extra).
"""
