"""collect_seldom: the cyclic collector is quiet inside, and restored only when the last block ends."""

from __future__ import annotations

import gc
import threading

from needlecast.pacing import collect_seldom


def test_overlapping_blocks_in_two_threads_restore_the_collector_only_at_the_end() -> None:
    before = gc.get_threshold()
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        with collect_seldom():
            seen["first"] = gc.get_threshold()[0]
            a_inside.set()
            b_inside.wait(5)
        a_done.set()

    def second() -> None:
        a_inside.wait(5)
        with collect_seldom(5_000):
            b_inside.set()
            a_done.wait(5)  # the block that started first has ended: this one must still be quiet
            seen["second, after the first ended"] = gc.get_threshold()[0]
            seen["frozen"] = gc.get_freeze_count() > 0

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"first": 100_000, "second, after the first ended": 100_000, "frozen": True}
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_collector_is_restored_after_an_error() -> None:
    before = gc.get_threshold()
    try:
        with collect_seldom():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
