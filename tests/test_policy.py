"""The policy package: identity from real sockets and processes, rules, quotas, drop-ins, reload."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from smdbus.classes import ALL_CLASSES, Class, user_class
from smdbus.policy import (
    SYSTEM_OWNED,
    AccessConfig,
    AccessConfigError,
    Bucket,
    CompiledPolicy,
    Identity,
    Ledger,
    Limits,
    PolicyStore,
    Quotas,
    Rule,
    Rules,
    default_rules,
    load_access_policy,
    load_dropins,
    parse_access,
    parse_dropin,
    parse_peergroups,
    parse_principal,
    parse_status,
    read_identity,
)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
DAEMON_UID = 4242
PRIV = {0, DAEMON_UID}


class FakeResolver:
    users: ClassVar[dict[str, int]] = {"root": 0, "alice": 1000, "nobody": 65534}
    groups: ClassVar[dict[str, int]] = {"netdev": 108, "monitor": 109}

    def uid(self, name: str) -> int:
        return self.users[name]

    def gid(self, name: str) -> int:
        return self.groups[name]


R = FakeResolver()


def who(uid: int, *groups: int, gid: int | None = None) -> Identity:
    return Identity(uid, uid if gid is None else gid, 100, frozenset(groups), "t")


# -- identity ------------------------------------------------------------------


def test_parse_status_and_groups() -> None:
    text = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n"
    assert parse_status(text) == (1000, frozenset({4, 24, 27}))
    assert parse_status("Name:\tx\n") == (None, frozenset())
    assert parse_peergroups((4).to_bytes(4, "little") + (27).to_bytes(4, "little")) == {4, 27}


def test_identity_of_a_socketpair_is_this_process() -> None:
    a, b = socket.socketpair()
    with a, b:
        me = read_identity(a)
    assert (me.uid, me.gid, me.pid) == (os.getuid(), os.getgid(), os.getpid())
    assert me.groups == frozenset(os.getgroups()) - {os.getgid()} or me.groups == frozenset(
        os.getgroups()
    )
    assert me.comm == Path("/proc/self/comm").read_text().strip()
    assert "pid" in me.label() and "comm" in me.label()


def _listener(tmp_path: Path) -> tuple[socket.socket, str]:
    """An abstract socket (no file permissions: any uid reaches it), with a timeout."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(f"\0smdbus-test-policy-{os.getpid()}-{tmp_path.name}")
    srv.listen(4)
    srv.settimeout(10)
    return srv, srv.getsockname()[1:].decode()


_CHILD = """
import socket, sys
open("/proc/self/comm", "w").write(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect("\\0" + sys.argv[1])
s.sendall(b"x")
s.recv(1)  # until the test has read our identity
"""


def test_identity_of_another_user_with_a_hostile_comm(tmp_path: Path) -> None:
    """nobody, no groups, a command name with an escape sequence: all seen, the name escaped."""
    if os.getuid() != 0:
        pytest.skip("needs root to run a child as nobody")
    srv, path = _listener(tmp_path)
    with srv:
        child = subprocess.Popen([*NOBODY, sys.executable, "-c", _CHILD, path, "\x1b[2Jpwn\n"])
        conn, _ = srv.accept()
        with conn:
            conn.recv(1)
            peer = read_identity(conn)
            conn.sendall(b"x")
        child.wait(10)
    assert (peer.uid, peer.gid, peer.groups) == (65534, 65534, frozenset())
    assert peer.pid == child.pid
    assert peer.comm == "\\x1b[2Jpwn"
    assert "\x1b" not in peer.label()


def test_identity_of_an_exited_peer_trusts_no_proc_entry(tmp_path: Path) -> None:
    """The peer is gone when we ask: its pid may be another's by now, so no comm is believed."""
    srv, path = _listener(tmp_path)
    with srv:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD.replace("s.recv(1)", "pass"), path, "gone"], check=True
        )
        conn, _ = srv.accept()
        with conn:
            peer = read_identity(conn)
    assert child.returncode == 0
    assert peer.uid == os.getuid()
    assert peer.comm == "?"
    assert not peer.pidfd


def test_identity_ignores_a_proc_entry_of_another_uid(tmp_path: Path) -> None:
    """A /proc entry whose uid is not the credential's is another process's: no comm from it."""
    proc = tmp_path / "proc"
    a, b = socket.socketpair()
    with a, b:
        entry = proc / str(os.getpid())
        entry.mkdir(parents=True)
        (entry / "status").write_text(f"Uid:\t{os.getuid() + 1}\t0\t0\t0\nGroups:\t7\n")
        (entry / "comm").write_text("impostor\n")
        peer = read_identity(a, proc=str(proc))
        assert peer.comm == "?"
        (entry / "status").write_text(f"Uid:\t{os.getuid()}\t0\t0\t0\nGroups:\t7\n")
        assert read_identity(a, proc=str(proc)).comm == "impostor"


def test_pidfd_is_used_where_the_kernel_has_it() -> None:
    a, b = socket.socketpair()
    with a, b:
        try:
            fd = a.getsockopt(socket.SOL_SOCKET, 77, 4)
        except OSError:
            has = False
        else:
            os.close(int.from_bytes(fd, "little"))
            has = True
        before = len(os.listdir("/proc/self/fd"))
        assert read_identity(a).pidfd is has
        assert len(os.listdir("/proc/self/fd")) == before  # the pidfd is not kept


# -- rules -----------------------------------------------------------------------


def test_default_policy_keeps_system_classes_to_the_privileged() -> None:
    policy = default_rules(PRIV)
    for uid in PRIV:
        assert policy.masks(who(uid)).send == ALL_CLASSES
    user = policy.masks(who(1000))
    assert user.send & SYSTEM_OWNED == 0
    assert user.send == ALL_CLASSES & ~SYSTEM_OWNED
    assert user.receive == ALL_CLASSES
    unknown = policy.masks(Identity(None, None, None))
    assert unknown.send & SYSTEM_OWNED == 0
    assert policy.describe_senders(int(Class.NETWORK)) == "root and the daemon's user"
    assert policy.describe_senders(int(Class.METRICS)) == "anyone"


def test_rules_grant_by_user_and_by_any_group_and_add_up() -> None:
    rules = (
        Rule(int(Class.NETWORK), send=parse_principal("@netdev", R)),
        Rule(int(Class.NETWORK | Class.SYSTEM_STATE), send=parse_principal("alice", R)),
        Rule(int(Class.METRICS), receive=parse_principal("@monitor", R)),
    )
    policy = CompiledPolicy.build(Rules(rules), PRIV)
    net, state, metrics = int(Class.NETWORK), int(Class.SYSTEM_STATE), int(Class.METRICS)
    assert policy.masks(who(1000)).send & (net | state) == net | state  # alice
    assert policy.masks(who(2000, 108)).send & (net | state) == net  # a supplementary group
    assert policy.masks(who(2000, gid=108)).send & net == net  # the primary group
    assert policy.masks(who(2000)).send & (net | state) == 0
    assert policy.masks(who(2000)).receive & metrics == 0
    assert policy.masks(who(2000, 109)).receive & metrics == metrics
    assert policy.masks(who(0)).receive == ALL_CLASSES  # root always
    assert "uid 1000" in policy.describe_senders(state)


def test_compiled_policy_merges_bits_with_the_same_principals() -> None:
    """20 rules over 20 user/class bits for 2 groups: 2 grants to test per peer, not 20."""
    rules = tuple(
        Rule(1 << bit, send=parse_principal("@netdev" if bit % 2 else "@monitor", R))
        for bit in [*range(4, 16), *range(24, 32)]
    )
    policy = CompiledPolicy.build(Rules(rules), PRIV)
    assert len(policy.send.grants) == 2
    assert policy.masks(who(5, 108)).send & user_class(1)
    assert not policy.masks(who(5, 108)).send & user_class(0)


def test_defaults_off_opens_the_system_classes() -> None:
    policy = CompiledPolicy.build(Rules((), defaults=False), PRIV)
    assert policy.masks(who(1000)).send == ALL_CLASSES


def test_principal_syntax() -> None:
    assert parse_principal("*", R).anyone
    assert parse_principal("1000", R).uids == {1000}
    assert parse_principal("@108", R).gids == {108}
    assert parse_principal("nobody", R).uids == {65534}
    for bad, why in [("@", "empty group"), ("mallory", "no such user"), ("@x", "no such group")]:
        with pytest.raises(ValueError, match=why):
            parse_principal(bad, R)


# -- the config table ---------------------------------------------------------------


def test_access_table_parses() -> None:
    cfg = parse_access(
        {
            "defaults": True,
            "dir": "access.d",
            "rule": [{"classes": "NETWORK|USER0", "send": ["@netdev", 1000], "receive": ["*"]}],
            "quota": {"user": {"connections": 8, "publish_rate": 100}, "root": {"outbound": 1024}},
        },
        "/etc/smd/daemon.toml",
        base=Path("/etc/smd"),
        resolver=R,
    )
    assert cfg.dir == Path("/etc/smd/access.d")
    (rule,) = cfg.rules
    assert rule.classes == Class.NETWORK | user_class(0)
    assert rule.send is not None and rule.send.uids == {1000} and rule.send.gids == {108}
    assert rule.receive is not None and rule.receive.anyone
    assert rule.source == "/etc/smd/daemon.toml: access.rule[0]"
    assert cfg.quotas.default.connections == 8 and cfg.quotas.default.publish_rate == 100.0
    assert cfg.quotas.root.outbound == 1024
    assert cfg.quotas.daemon == Quotas().daemon


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"rules": []}, "access.rules: unknown key"),
        ({"defaults": "yes"}, "access.defaults: expected true or false"),
        (
            {"rule": [{"classes": "NETWROK", "send": ["*"]}]},
            "access.rule[0].classes: unknown class",
        ),
        ({"rule": [{"classes": "NETWORK"}]}, "access.rule[0]: says neither send nor receive"),
        ({"rule": [{"send": ["*"]}]}, "access.rule[0].classes: required"),
        ({"rule": [{"classes": "0", "send": ["*"]}]}, "access.rule[0].classes: names no class"),
        (
            {"rule": [{"classes": "METRICS", "send": ["*"]}, {"classes": "X", "sned": []}]},
            "access.rule[1].sned: unknown key",
        ),
        (
            {"rule": [{"classes": "METRICS", "receive": ["*", "@wheel"]}]},
            "access.rule[0].receive[1]: no such group 'wheel'",
        ),
        ({"rule": [{"classes": "METRICS", "send": "*"}]}, "access.rule[0].send: expected a list"),
        ({"quota": {"users": {}}}, "access.quota.users: unknown key"),
        ({"quota": {"user": {"connections": 0}}}, "access.quota.user.connections: 0 is out"),
        ({"quota": {"root": {"outbound": 1.5}}}, "access.quota.root.outbound: expected a whole"),
        ({"quota": {"daemon": {"publish_rate": True}}}, "access.quota.daemon.publish_rate"),
    ],
)
def test_access_table_errors_name_file_and_field(table: dict[str, object], where: str) -> None:
    with pytest.raises(AccessConfigError) as err:
        parse_access(table, "/etc/smd/daemon.toml", resolver=R)
    assert str(err.value).startswith(f"/etc/smd/daemon.toml: {where}")


def test_rule_lists_are_bounded() -> None:
    with pytest.raises(AccessConfigError, match="at most 256"):
        parse_access({"rule": [{"classes": "ALL", "send": ["1"] * 257}]}, "f", resolver=R)
    with pytest.raises(AccessConfigError, match="at most 1024"):
        parse_access({"rule": [{"classes": "ALL", "send": ["*"]}] * 1025}, "f", resolver=R)


def test_dropin_errors_name_the_file() -> None:
    with pytest.raises(AccessConfigError, match=r"^/d/10\.toml: not valid TOML"):
        parse_dropin(b"[[rule]\n", "/d/10.toml", R)
    with pytest.raises(AccessConfigError, match=r"^/d/10\.toml: access: unknown key"):
        parse_dropin(b"[access]\n", "/d/10.toml", R)
    with pytest.raises(AccessConfigError, match=r"rule\[0\]\.send\[0\]: no such user"):
        parse_dropin(b'[[rule]]\nclasses = "USER1"\nsend = ["mallory"]\n', "/d/10.toml", R)
    with pytest.raises(AccessConfigError, match="larger than"):
        parse_dropin(b"#" * (64 * 1024 + 1), "/d/10.toml", R)


# -- drop-in files ------------------------------------------------------------------

_NET = b'[[rule]]\nclasses = "NETWORK"\nsend = ["@netdev"]\n'


@pytest.fixture
def dropdir(tmp_path: Path) -> Path:
    if os.getuid() != 0:
        pytest.skip("drop-ins are trusted only when root owns them: needs root")
    d = tmp_path / "access.d"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    return d


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_dropins_load_in_order_and_skip_untrusted_files(dropdir: Path) -> None:
    _write(dropdir / "20-b.toml", b'[[rule]]\nclasses = "USER1"\nreceive = ["alice"]\n')
    _write(dropdir / "10-a.toml", _NET)
    _write(dropdir / "30-gw.toml", _NET, 0o664)
    _write(dropdir / "40-ow.toml", _NET, 0o646)
    os.chown(_write(dropdir / "50-own.toml", _NET), 65534, -1)
    (dropdir / "60-link.toml").symlink_to(dropdir / "10-a.toml")
    (dropdir / "70-dir.toml").mkdir()
    _write(dropdir / "README", b"not a rule file")
    got = load_dropins(dropdir, resolver=R)
    assert [r.classes for r in got.rules] == [Class.NETWORK, user_class(1)]
    assert got.rules[0].source == f"{dropdir}/10-a.toml: rule[0]"
    reasons = "\n".join(got.skipped)
    assert f"{dropdir}/30-gw.toml: skipped, writable by group or others (mode 0664)" in reasons
    assert f"{dropdir}/40-ow.toml: skipped, writable by group or others (mode 0646)" in reasons
    assert f"{dropdir}/50-own.toml: skipped, owned by uid 65534, not 0" in reasons
    assert f"{dropdir}/60-link.toml: skipped, cannot open" in reasons
    assert f"{dropdir}/70-dir.toml: skipped, not a regular file" in reasons
    assert len(got.skipped) == 5


def test_a_dropin_directory_others_may_write_is_not_read(dropdir: Path) -> None:
    _write(dropdir / "10-a.toml", _NET)
    os.chmod(dropdir, 0o777)
    got = load_dropins(dropdir, resolver=R)
    assert got.rules == ()
    assert got.skipped == (f"{dropdir}: skipped, writable by group or others (mode 0777)",)
    assert load_dropins(dropdir / "missing", resolver=R).rules == ()


def test_a_broken_trusted_dropin_fails_the_load(dropdir: Path) -> None:
    _write(dropdir / "10-a.toml", b'[[rule]]\nclasses = "NETWORK"\nsend = ["@nope"]\n')
    with pytest.raises(AccessConfigError, match=r"10-a\.toml: rule\[0\]\.send\[0\]: no such group"):
        load_dropins(dropdir, resolver=R)


# -- reload ------------------------------------------------------------------------


def test_reload_keeps_the_old_policy_on_error_and_says_why(dropdir: Path) -> None:
    cfg = AccessConfig(dir=dropdir)
    store = PolicyStore(lambda: load_access_policy(cfg, PRIV, resolver=R))
    nobody_in_netdev = who(65534, 108)
    assert not store.current.rules.masks(nobody_in_netdev).send & Class.NETWORK
    _write(dropdir / "10-net.toml", _NET)
    _write(dropdir / "20-gw.toml", _NET, 0o666)
    done = store.reload()
    assert done.ok and store.generation == 1
    assert done.skipped and "20-gw.toml: skipped" in done.skipped[0]
    assert store.current.rules.masks(nobody_in_netdev).send & Class.NETWORK
    _write(dropdir / "15-bad.toml", b"[[rule]]\nclasses = 7\n")
    failed = store.reload()
    assert not failed.ok and store.generation == 1
    assert failed.reason is not None
    assert "15-bad.toml: rule[0].classes: required" in failed.reason
    assert "keeping the policy in force" in failed.reason
    assert store.current.rules.masks(nobody_in_netdev).send & Class.NETWORK  # still the old
    assert stat.S_IMODE(os.stat(dropdir).st_mode) == 0o755


# -- quotas ------------------------------------------------------------------------


def test_bucket_grants_what_it_holds_and_says_when_the_next_comes() -> None:
    b = Bucket(rate=10.0, burst=5, now=0.0)
    assert b.take(0.0, 8) == 5
    assert b.take(0.0) == 0
    assert b.wait(0.0) == pytest.approx(0.1)
    assert b.take(0.25, 8) == 2
    assert b.wait(0.25) == pytest.approx(0.05)
    assert b.take(100.0, 100) == 5  # never more than the burst


def test_ledger_limits_per_uid_with_their_own_limits_for_the_privileged() -> None:
    quotas = Quotas(
        default=Limits(connections=2, publish_rate=10, publish_burst=3, control_burst=1),
        root=Limits(connections=3),
        daemon=Limits(connections=4),
    )
    ledger = Ledger(quotas, daemon_uid=DAEMON_UID)
    assert ledger.connect(1000, 0.0) is None
    assert ledger.connect(1000, 0.0) is None
    refused = ledger.connect(1000, 0.0)
    assert refused == "uid 1000 holds 2 connections (quota 2)"
    assert ledger.connect(2000, 0.0) is None  # another uid has its own
    assert [ledger.connect(0, 0.0) for _ in range(4)] == [
        None,
        None,
        None,
        refused.replace(
            "uid 1000 holds 2 connections (quota 2)", "uid 0 holds 3 connections (quota 3)"
        ),
    ]
    assert all(ledger.connect(DAEMON_UID, 0.0) is None for _ in range(4))
    ledger.disconnect(1000)
    assert ledger.connect(1000, 0.0) is None
    # publishing: the burst, then held with a wait, never refused outright
    assert ledger.publish(1000, 5, 0.0) == (3, 0.0)
    granted, wait = ledger.publish(1000, 5, 0.0)
    assert granted == 0 and wait == pytest.approx(0.1)
    assert ledger.publish(1000, 5, 0.1)[0] == 1
    assert ledger.publish(0, 10_000, 0.0) == (1000, 0.0)  # root's own bucket
    # control queries
    assert ledger.query(1000, 0.0) is None
    assert ledger.query(1000, 0.0) == "uid 1000 is over 10 queries a second (bursts of 1)"
    # outbound bytes across the uid's connections
    assert ledger.queue(1000, 10 * 1024 * 1024) is None
    assert ledger.queue(1000, 7 * 1024 * 1024) is not None
    ledger.queue(1000, -17 * 1024 * 1024)
    assert ledger.outbound(1000) == 0
    assert ledger.trips[(1000, "connections")] == 1
    assert ledger.trips[(0, "connections")] == 1
    assert ledger.trips[(1000, "publish_rate")] == 1
    assert ledger.trips[(1000, "control_rate")] == 1
    assert ledger.trips[(1000, "outbound")] == 1


def test_ledger_forgets_a_uid_with_no_connection_and_reconfigures() -> None:
    ledger = Ledger(Quotas(default=Limits(connections=1)), daemon_uid=DAEMON_UID)
    assert ledger.connect(1000, 0.0) is None
    ledger.disconnect(1000)
    assert ledger.connections(1000) == 0
    assert ledger.publish(1000, 7, 0.0) == (7, 0.0)  # no record: nothing to hold
    assert ledger.connect(1000, 0.0) is None
    ledger.reconfigure(Quotas(default=Limits(connections=2)), 0.0)
    assert ledger.connections(1000) == 1
    assert ledger.connect(1000, 0.0) is None
    assert ledger.connect(1000, 0.0) is not None
