"""``test_proxy_flow``'s tests again, on uvloop: see ``test_proxy_uvloop`` (why and how)."""

from __future__ import annotations

import pytest

pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'smdbus[fast]')")

from test_proxy_flow import *  # noqa: F403
from test_proxy_uvloop import event_loop_policy  # noqa: F401
