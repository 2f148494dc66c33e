"""Routing by configuration: the transport table, then the relayhost, then MX (the
``RouteTable``), and the ``Router`` sending each recipient to its agent."""

from __future__ import annotations

from mailwright.accounts.directory import LocalDirectory
from mailwright.config import DomainConfig, parse_config
from mailwright.delivery.relay.routes import RouteTable
from mailwright.delivery.router import NoRelayAgent, Route, Router
from mailwright.spool.model import Recipient

TRANSPORTS = [
    {"domain": "lists.test", "nexthop": "smtp:[lists-relay.test]:2525"},
    {"domain": ".corp.test", "nexthop": "smtp:gateway.test"},
    {"domain": ".eu.corp.test", "nexthop": "smtp:[eu-gateway.test]"},
    {"domain": "store.test", "nexthop": "lmtp:unix:/run/dovecot/lmtp"},
    {"domain": "here.test", "nexthop": "local"},
]


def table(**outbound: object) -> RouteTable:
    config = parse_config({"transport": TRANSPORTS, "outbound": outbound})
    return RouteTable(config.transports, config.outbound)


def test_transport_then_mx():
    routes = table()
    assert str(routes.destination("lists.test")) == "smtp:[lists-relay.test]:2525"
    assert routes.destination("lists.test").source == "transport lists.test"
    assert str(routes.destination("a.corp.test")) == "smtp:gateway.test"


def test_longest_suffix_wins_and_the_parent_is_not_a_subdomain():
    routes = table()
    assert str(routes.destination("x.eu.corp.test")) == "smtp:[eu-gateway.test]"
    mx = routes.destination("corp.test")  # ".corp.test" covers subdomains only
    assert (mx.source, mx.nexthop.host, mx.nexthop.mx_lookup) == ("mx", "corp.test", True)
    assert mx.by_mx_of_recipient_domain


def test_relayhost_takes_what_no_transport_names():
    routes = table(relayhost="[smarthost.test]:587", tls="encrypt")
    relay = routes.destination("elsewhere.test")
    assert (str(relay), relay.source, relay.tls) == (
        "smtp:[smarthost.test]:587",
        "relayhost",
        "encrypt",
    )
    assert not relay.by_mx_of_recipient_domain
    assert str(routes.destination("lists.test")) == "smtp:[lists-relay.test]:2525"


def test_router_routes_by_transport_before_local_domains():
    config = parse_config({"transport": TRANSPORTS})
    directory = LocalDirectory(
        [DomainConfig(name="store.test", mailboxes=["ann"]), DomainConfig(name="mine.test")],
        "+",
    )
    routes = RouteTable(config.transports, config.outbound)
    router = Router(directory, local=NoRelayAgent(), routes=routes)
    assert router.route("ann@store.test") is Route.LMTP  # local domain, but LMTP
    assert router.route("x@mine.test") is Route.LOCAL
    assert router.route("x@here.test") is Route.LOCAL  # transport "local"
    assert router.route("x@LISTS.test") is Route.REMOTE
    assert router.route("x@nowhere.test") is Route.REMOTE
    assert router.route("postmaster") is Route.LOCAL
    split = router.split(
        [Recipient("ann@store.test"), Recipient("b@far.test"), Recipient("c@far.test")]
    )
    assert {route: [r.address for r in rcpts] for route, rcpts in split.items()} == {
        Route.LMTP: ["ann@store.test"],
        Route.REMOTE: ["b@far.test", "c@far.test"],
    }
