import pytest

from collector.topics import topic_matches


@pytest.mark.parametrize(
    "binding, key, expected",
    [
        ("hva/instance_terminated.#", "hva/instance_terminated.hva.demo1", True),
        ("hva/instance_terminated.hva.*", "hva/instance_terminated.hva.demo1", True),
        ("hva/instance_terminated.*", "hva/instance_terminated.hva.demo1", False),
        ("hva/instance_terminated.#", "hva/instance_started.hva.demo1", False),
        ("instance.scheduled.#", "instance.scheduled.collector.master", True),
        ("#", "anything.at.all", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c.y", False),
    ],
)
def test_amqp_topic_semantics(binding, key, expected):
    assert topic_matches(binding, key) is expected
