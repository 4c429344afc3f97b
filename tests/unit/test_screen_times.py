"""Times inside messages on the screen (cli.output.screen_times): one format, unless it would hide a
difference the message is about."""

from __future__ import annotations

from failure_aware.cli.output import screen_times


def test_times_in_a_message_take_the_screen_format() -> None:
    text = "retry at 2026-01-02T04:45:54.971227Z (was 2026-01-02T04:40:00Z)"
    assert screen_times(text) == "retry at 2026-01-02 04:45:54Z (was 2026-01-02 04:40:00Z)"


def test_two_times_in_the_same_second_are_shown_to_the_microsecond() -> None:
    text = "may be retried from 2026-01-02T04:46:15.900000Z (2026-01-02T04:46:15.200000Z is too early)"
    assert screen_times(text) == ("may be retried from 2026-01-02 04:46:15.900000Z "
                                  "(2026-01-02 04:46:15.200000Z is too early)")


def test_the_same_time_twice_and_text_that_is_no_time_are_left_alone() -> None:
    text = "at 2026-01-02T04:46:15Z and again 2026-01-02T04:46:15.000000Z; not a time: 2026-13-45T99:99:99Z"
    assert screen_times(text) == ("at 2026-01-02 04:46:15Z and again 2026-01-02 04:46:15Z; "
                                  "not a time: 2026-13-45T99:99:99Z")
