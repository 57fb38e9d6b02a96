"""The transitions of one cluster's tracker entry, without workers or servers."""

from __future__ import annotations

import pytest

import kcp.etcd
from kcp.certs import KeyPair, issue_certificate, new_certificate_authority
from kcp.etcd import EtcdTLS
from kcp.tracker import TrackerOptions
from kcp.tracker.entry import ClusterEntry, Verdict
from kcp.tracker.health import ProbeResult
from kcp.tracker.identity import ClusterKey

OK = ProbeResult("api_server", "success")
FAILED = ProbeResult("api_server", "failure", error="refused")
REFUSED = ProbeResult("api_server", "unauthorized", error="401")


def _record(entry: ClusterEntry, result: ProbeResult, changes: list[bool]) -> Verdict | None:
    return entry.record(
        result, None, failure_threshold=3, backoff=lambda n: float(n), on_change=changes.append
    )


def test_a_never_connected_cluster_backs_off_and_stays_connecting() -> None:
    entry, changes = ClusterEntry(ClusterKey("ns", "c", "u")), list[bool]()
    verdicts = [_record(entry, FAILED, changes) for _ in range(4)]
    assert [v.delay for v in verdicts if v] == [1.0, 2.0, 3.0, 4.0]
    assert entry.state == "connecting" and changes == []
    assert entry.health().last_error == "refused"


def test_a_connected_cluster_goes_down_after_the_threshold_or_at_once_on_401() -> None:
    entry, changes = ClusterEntry(ClusterKey("ns", "c", "u")), list[bool]()
    assert _record(entry, OK, changes) == Verdict("connecting", "connected", health_changed=True)
    states = [v.state for v in (_record(entry, FAILED, changes) for _ in range(3)) if v]
    assert states == ["connected", "connected", "down"]
    assert changes == [True, False] and entry.refresh_requested
    again = ClusterEntry(ClusterKey("ns", "d", "u"))
    _record(again, OK, [])
    verdict = _record(again, REFUSED, [])
    assert verdict is not None and (verdict.previous, verdict.state) == ("connected", "down")


def test_only_a_check_that_changes_what_health_reports_is_a_health_change() -> None:
    entry = ClusterEntry(ClusterKey("ns", "c", "u"))
    changed = [
        verdict.health_changed
        for verdict in (_record(entry, r, []) for r in (OK, OK, FAILED, FAILED, FAILED, FAILED))
        if verdict is not None
    ]
    # Connected; still well; the API server stops answering; no news; down; no news.
    assert changed == [True, False, True, False, True, False]
    etcd_ok = ProbeResult("etcd", "success", answered_by="127.0.0.1:2379")
    etcd_failed = ProbeResult("etcd", "failure", error="no leader")
    fresh = ClusterEntry(ClusterKey("ns", "d", "u"))
    _record(fresh, OK, [])
    changed = []
    for etcd in (etcd_ok, etcd_ok, etcd_failed, etcd_ok):
        verdict = fresh.record(OK, etcd, failure_threshold=3, backoff=float, on_change=print)
        assert verdict is not None and verdict.state == "connected"
        changed.append(verdict.health_changed)
    # etcd's first verdict is no news (the reconcile reached etcd itself); then it turns.
    assert changed == [False, False, True, True]


def test_an_evicted_entry_records_nothing_and_keeps_no_client_or_certificate() -> None:
    entry = ClusterEntry(ClusterKey("ns", "c", "u"))
    entry.set_endpoints(("127.0.0.1:2379", "127.0.0.2:2379"))
    gone = entry.evict()
    assert (gone.members, gone.endpoints) == (2, {"127.0.0.1:2379", "127.0.0.2:2379"})
    assert _record(entry, OK, []) is None
    assert not entry.unless_evicted(lambda: None)
    assert entry.set_endpoints(("127.0.0.3:2379",)) is None


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


def _tls(ca: KeyPair) -> EtcdTLS:
    pair = issue_certificate(ca, common_name="kcp", usages=["client"], algorithm="ecdsa-p256")
    return EtcdTLS(ca.cert_pem, pair.cert_pem, pair.key_pem)


def test_the_two_newest_certificates_keep_their_channels(ca: KeyPair) -> None:
    entry = ClusterEntry(ClusterKey("ns", "c", "u"))
    entry.set_endpoints(("127.0.0.1:2379",))
    first, second, third = _tls(ca), _tls(ca), _tls(ca)
    assert entry.remember_tls(first) == ([], {"127.0.0.1:2379"})
    assert entry.remember_tls(second) == ([], {"127.0.0.1:2379"})
    assert entry.remember_tls(third) == ([first], {"127.0.0.1:2379"})


def test_a_secret_event_for_the_version_already_read_asks_for_nothing() -> None:
    entry = ClusterEntry(ClusterKey("ns", "c", "u"))
    assert entry.refresh_due(0.0, 600.0)  # new entries read their Secrets at once
    entry.etcd_secret_loaded("41", None, None)
    assert not entry.secret_event("etcd", "41", deleted=False)
    assert not entry.refresh_requested
    assert entry.secret_event("etcd", "41", deleted=True)
    assert entry.secret_event("kubeconfig", "41", deleted=False)


def test_the_shipped_transport_and_keepalive_are_the_etcd_packages() -> None:
    options = TrackerOptions()
    assert options.etcd_transport == "gateway" == kcp.etcd.DEFAULT_TRANSPORT
    assert options.tunnel_keepalive == 30.0 == kcp.etcd.DEFAULT_KEEPALIVE


def test_a_read_by_the_reconciler_stands_in_for_the_api_server_probe_of_a_healthy_cluster() -> None:
    entry = ClusterEntry(ClusterKey("ns", "c", "u"))
    entry.api_answered()  # not connected yet: it proves nothing about a first connection
    assert entry.api_due(10.0)
    _record(entry, OK, [])
    assert entry.api_due(10.0)
    entry.api_answered()
    assert not entry.api_due(10.0)
    assert entry.api_due(0.0) and entry.api_due(None)
    _record(entry, FAILED, [])  # a failing probe: probe on every check until it answers
    assert entry.api_due(10.0)
