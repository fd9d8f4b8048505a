"""Order-safety of agent updates rests on these state machines."""

import pytest

from collector.errors import InvalidArgument, InvalidStateTransition
from collector.states import INSTANCE_TRANSITIONS, VOLUME_TRANSITIONS, check_transition


def test_forward_instance_transition_applies():
    assert check_transition("instance", INSTANCE_TRANSITIONS, "pending", "running") is True


def test_resending_the_current_state_is_a_no_op():
    assert check_transition("instance", INSTANCE_TRANSITIONS, "running", "running") is False


def test_late_attaching_after_attached_is_refused():
    with pytest.raises(InvalidStateTransition):
        check_transition("volume", VOLUME_TRANSITIONS, "attached", "attaching")


def test_backwards_instance_transition_is_refused():
    with pytest.raises(InvalidStateTransition):
        check_transition("instance", INSTANCE_TRANSITIONS, "running", "pending")


@pytest.mark.parametrize("bad", ["runnning", "", None, 3])
def test_unknown_state_is_invalid_argument(bad):
    with pytest.raises(InvalidArgument):
        check_transition("instance", INSTANCE_TRANSITIONS, "running", bad)
