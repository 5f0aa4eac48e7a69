"""Group commit (app.chat.group_commit): concurrent callers share one write."""

import contextlib
import threading
import time

import pytest
from greenlet import GreenletExit

from app.chat.group_commit import Batcher, BatcherPool


def run_concurrently(batcher, items):
    results, errors = {}, {}
    start = threading.Barrier(len(items))

    def submit(item):
        start.wait()
        try:
            results[item] = batcher.submit(item)
        except (Exception, GreenletExit) as error:
            errors[item] = error

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_a_lone_caller_gets_its_result():
    batcher = Batcher(lambda items: [item * 2 for item in items])

    assert batcher.submit(21) == 42


def test_concurrent_callers_share_writes_and_get_their_own_results():
    batches = []

    def write(items):
        batches.append(list(items))
        time.sleep(0.02)  # a commit takes a while; others queue meanwhile
        return [f"stored {item}" for item in items]

    results, errors = run_concurrently(Batcher(write), list(range(40)))

    assert errors == {}
    assert results == {item: f"stored {item}" for item in range(40)}
    assert sorted(item for batch in batches for item in batch) == list(range(40))
    assert len(batches) < 40


def test_a_failed_write_fails_every_caller_of_its_batch():
    def write(items):
        raise RuntimeError("disk full")

    results, errors = run_concurrently(Batcher(write), list(range(5)))

    assert results == {}
    assert {str(error) for error in errors.values()} == {"disk full"}


def test_a_stopped_leader_still_answers_every_caller_of_its_batch():
    def write(items):
        time.sleep(0.01)  # the others join the batch meanwhile
        raise GreenletExit  # as when the leader's greenlet is killed

    results, errors = run_concurrently(Batcher(write), list(range(5)))

    assert results == {}
    assert sorted(errors) == list(range(5))
    assert {type(error) for error in errors.values()} == {GreenletExit}


def test_batches_hold_at_most_max_size():
    sizes = []

    def write(items):
        sizes.append(len(items))
        time.sleep(0.01)
        return items

    results, _ = run_concurrently(Batcher(write, max_size=3), list(range(12)))

    assert len(results) == 12
    assert max(sizes) <= 3


@pytest.mark.parametrize("failing", [True, False])
def test_the_next_batch_is_written_after_a_failure_or_success(failing):
    calls = []

    def write(items):
        calls.append(items)
        if failing and len(calls) == 1:
            raise RuntimeError("once")
        return items

    batcher = Batcher(write)
    with pytest.raises(RuntimeError) if failing else contextlib.nullcontext():
        batcher.submit("first")

    assert batcher.submit("second") == "second"


def test_a_slow_key_holds_up_only_its_own_callers():
    release = threading.Event()

    def write(items):
        if items[0].startswith("slow"):
            release.wait(timeout=10)
        return items

    pool = BatcherPool(write)
    slow = threading.Thread(target=pool.submit, args=("slow", "slow item"))
    slow.start()
    time.sleep(0.05)

    assert pool.submit("fast", "fast item") == "fast item"
    assert slow.is_alive()
    release.set()
    slow.join(timeout=10)
    assert pool._batchers == {}  # idle batchers are dropped


def test_a_leader_stopped_while_it_waits_for_its_turn_stalls_nobody(monkeypatch):
    # On gevent, as the chat runs: a greenlet can be killed while it waits.
    gevent = pytest.importorskip("gevent")
    from gevent import event, lock

    from app.chat import group_commit

    monkeypatch.setattr(
        group_commit,
        "threading",
        type("GeventThreading", (), {"Event": event.Event, "Lock": lock.Semaphore}),
    )
    monkeypatch.setattr(
        group_commit, "time", type("Clock", (), {"sleep": gevent.sleep})
    )
    batches = []

    def write(items):
        batches.append(list(items))
        gevent.sleep(0.05)  # a commit takes a while; the next batch forms
        return items

    batcher = Batcher(write)
    first = gevent.spawn(batcher.submit, "first")
    gevent.sleep(0.01)
    waiting_leader = gevent.spawn(batcher.submit, "second")
    joiner = gevent.spawn(batcher.submit, "third")
    gevent.sleep(0.01)
    waiting_leader.kill()  # while it waits for the first batch's write

    assert first.get(timeout=5) == "first"
    assert joiner.get(timeout=5) == "third"
    assert batches == [["first"], ["second", "third"]]
    assert batcher.submit("fourth") == "fourth"  # the turn went on
