import pytest

from collector.errors import InvalidSecurityGroupRuleSyntax
from collector.security_group_rules import parse_rules


def test_rules_parse_to_the_agents_shape():
    rules = parse_rules("""
        # ssh from anywhere
        tcp: 22, 22, ip4:0.0.0.0
        udp:53,53,sg-abcd1234
        icmp:8,0,ip4:10.0.0.0/8
        tcp:80,80,ip6:::/0
        icmp:-1,3,ip4:10.0.0.1
    """)
    assert rules == [
        {"ip_protocol": "tcp", "ip_fport": 22, "ip_tport": 22, "protocol": "ip4",
         "ip_source": "0.0.0.0/0"},
        {"ip_protocol": "udp", "ip_fport": 53, "ip_tport": 53, "protocol": None,
         "ip_source": "sg-abcd1234"},
        {"ip_protocol": "icmp", "icmp_type": 8, "icmp_code": 0, "protocol": "ip4",
         "ip_source": "10.0.0.0/8"},
    ]


@pytest.mark.parametrize("bad", [
    "tcp:0,22,ip4:0.0.0.0", "tcp:30,22,ip4:0.0.0.0", "gre:1,1,ip4:1.2.3.4",
    "tcp:22,22,host:foo", "icmp:99,0,ip4:1.2.3.4", "tcp:a,b,ip4:1.2.3.4", "tcp:22,ip4:1.2.3.4",
    "tcp:22,22,ip4:300.1.1.1",
])
def test_malformed_rules_are_refused(bad):
    with pytest.raises(InvalidSecurityGroupRuleSyntax):
        parse_rules(bad)


@pytest.mark.parametrize("source, network", [
    ("0.0.0.0", "0.0.0.0/0"),  # the original's "anywhere"
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("0.0.0.0/8", "0.0.0.0/8"),  # once widened to /0
    ("0.0.0.0/32", "0.0.0.0/32"),
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("10.1.2.3", "10.1.2.3/32"),
    ("10.1.2.3/32", "10.1.2.3/32"),
    ("192.168.4.0/22", "192.168.4.0/22"),
])
def test_an_ip4_source_is_exactly_the_network_written(source, network):
    (rule,) = parse_rules(f"tcp:22,22,ip4:{source}")
    assert rule["ip_source"] == network


@pytest.mark.parametrize("source", [
    "10.0.0.0/0",  # once narrowed to 10.0.0.0/32
    "10.0.0.5/24", "0.0.0.1/8", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8/8",
    "10.0.0.0/ 8x", "/8",
])
def test_an_ip4_source_with_host_bits_or_a_bad_prefix_is_refused(source):
    with pytest.raises(InvalidSecurityGroupRuleSyntax):
        parse_rules(f"tcp:22,22,ip4:{source}")
