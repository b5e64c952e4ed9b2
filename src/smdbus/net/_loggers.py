"""The network side's logger names: a view or a log config selects records by these.

A name here is a promise to whoever filters logs (``smd daemon --live`` shows
the detector's progress and leaves its result line out, since the daemon's own
note says the result): filter on these, never on a message's wording.
"""

CPD_LOGGER = "smdbus.net.cpd"
"""The captive portal detector's logger: each check's progress at INFO."""

CPD_RESULT_LOGGER = CPD_LOGGER + ".result"
"""Its child that logs each check's result, one INFO line."""
