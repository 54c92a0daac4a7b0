"""Resources: flat memory over many inferences, no thread or handle leak after sessions are
closed or collected, and ``close()`` / ``with`` release the dongle.
CI: 1 000 inferences (traced with tracemalloc); ``KP_LONG=1``: 100 000 (resident set size sampled, tracemalloc would
slow it 10x) (docs/reliability.md)."""

from __future__ import annotations

import gc
import os
import tracemalloc

import pytest

import kp_runtime as ort
from kp_backend import kp

from rel_helpers import LONG, DIGITS, digits_data, kneron_threads, scaled, wait_until

NEF = DIGITS / "digits_cnn.nef"
INFERENCES = scaled(1000, 100_000)


@pytest.fixture(scope="module")
def x():
    images, _ = digits_data.load_test_set()
    return digits_data.to_model_input(images)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def test_memory_stays_flat(virtual, x):
    with ort.InferenceSession(str(NEF), providers=[("kneron", {"device": virtual()})]) as s:
        feeds = [{"input": v} for v in x]
        for out in s.run_many(feeds[:200]):  # warm-up: caches, plans, thread stacks
            pass
        gc.collect()
        use_rss = LONG
        measure = _rss if use_rss else (lambda: tracemalloc.get_traced_memory()[0])
        if not use_rss:
            tracemalloc.start()
        try:
            base = measure()
            samples = []
            step = INFERENCES // 10
            done = 0
            while done < INFERENCES:
                for out in s.run_many(feeds[(done + k) % len(feeds)] for k in range(step)):
                    assert out[0].shape == (1, 10)
                done += step
                gc.collect()
                samples.append(measure() - base)
        finally:
            if not use_rss:
                tracemalloc.stop()
    growth = samples[-1] - samples[1]
    print(f"{'RSS' if LONG else 'traced memory'} over {INFERENCES} inferences "
          f"(bytes above start, every {INFERENCES // 10}): {samples}")
    limit = 8 * 2**20 if LONG else 1 * 2**20  # RSS moves in allocator arenas
    assert growth < limit, f"memory grew by {growth} bytes: {samples}"


def test_closing_and_collecting_sessions_leaks_nothing(virtual, x):
    device = virtual()
    threads0, fds0 = set(kneron_threads()), _fds()
    for _ in range(5):
        with ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device})]) as s:
            s.run(None, {"input": x[0]})
        s = ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device})])
        s.run(None, {"input": x[1]})
        s.close()
        s = ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device})])
        s.run(None, {"input": x[2]})
        del s  # never closed: collection releases it
        gc.collect()
    assert wait_until(lambda: {t.name for t in kneron_threads()
                               if t not in threads0 and t.name.startswith("kneron-")} == set(), 5)
    assert _fds() <= fds0 + 2 or fds0 < 0


def test_close_releases_the_dongle_for_another_user(virtual, x):
    device = virtual()
    s = ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device})])
    s.run(None, {"input": x[0]})
    from kp_backend import emulator

    backend = emulator.get_shared_virtual_backend(device.partition(":")[2])
    with pytest.raises(kp.ApiKPException):  # claimed by the session: BUSY -> connect fails
        kp.core.connect_devices([0], backend=backend)
    s.close()
    g = kp.core.connect_devices([0], backend=backend)  # free again
    kp.core.disconnect_devices(g)
    with ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device})]) as s2:
        s2.run(None, {"input": x[0]})
    g = kp.core.connect_devices([0], backend=backend)
    kp.core.disconnect_devices(g)


def test_seed_group_is_released_by_disconnect_and_by_gc(emu):
    backend, _ = emu("KL520")
    g = kp.core.connect_devices([0], backend=backend)
    kp.core.disconnect_devices(g)
    g = kp.core.connect_devices([0], backend=backend)
    del g
    gc.collect()
    g = kp.core.connect_devices([0], backend=backend)  # the collected group let it go
    kp.core.disconnect_devices(g)
