"""The firmware's FIFO queues (PROTOCOL.md §7.2, §7.3, §7.5): input and result buffers, the
image queue, the result queue, frame dropping and FIFO reset.

Counting model: ``I`` input buffers and ``R`` result buffers exist after control 0x82. The
receiver takes an input buffer before it reads each OUT message (commands included); a
complete inference (all its images) is a :class:`Job` in the image queue holding one input
buffer per image; the worker takes the oldest job, takes one result buffer per result, and
returns the job's input buffers when the job is done; the sender returns a result buffer
once the host has read the result. All state is guarded by the dongle's lock, which callers
hold; each change wakes only the firmware threads it concerns (``wake(*whats)``, see
``firmware.WAITS``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Job", "Fifo"]


@dataclass
class Job:
    """One inference: its images by index (request header + payload) and job id."""

    job_id: int
    inference_number: int
    model_id: int
    images: dict[int, tuple[Any, bytes]] = field(default_factory=dict)
    held: int = 0  # input buffers this job holds (0 for images received before the queues)


class Fifo:
    """Buffers and queues of one boot, created by control 0x82."""

    def __init__(self, wake: Callable[..., None], input_count: int, input_size: int,
                 result_count: int, result_size: int) -> None:
        self.wake = wake
        self.input_count, self.input_size = input_count, input_size
        self.result_count, self.result_size = result_count, result_size
        self.free_inputs = input_count
        self.free_results = result_count
        self.image_queue: collections.deque[Job] = collections.deque()
        self.result_queue: collections.deque[bytes] = collections.deque()
        self.collecting: Job | None = None
        self.frame_drop = False
        self.dropped = 0  # inferences discarded by frame dropping (for tests and logs)

    # -- receiver ------------------------------------------------------------------------
    def try_take_input(self, message_waiting: bool) -> bool:
        """Take a free input buffer; with frame drop on and a message waiting on the OUT
        endpoint, discard the oldest queued job to make one (the drop happens only when a
        new message actually arrives, as the golden transcripts show). False when the
        receiver must wait."""
        if self.free_inputs > 0:
            self.free_inputs -= 1
            return True
        if self.frame_drop and message_waiting:
            for victim in self.image_queue:
                if victim.held:
                    self.image_queue.remove(victim)
                    self.dropped += 1
                    self.free_inputs += victim.held - 1
                    self.wake()  # nobody waits for fewer queued jobs; settle() watches
                    return True
        return False

    def release_inputs(self, count: int = 1) -> None:
        self.free_inputs = min(self.input_count, self.free_inputs + count)
        self.wake("rx")

    def collect(self, job_id: int, header: Any, payload: bytes, total_image: int,
                image_index: int, inference_number: int, model_id: int) -> None:
        """Add one received image (it owns one input buffer); queue the job once all
        ``total_image`` images are present. A repeated index replaces the earlier image."""
        job = self.collecting
        if job is None:
            job = self.collecting = Job(job_id, inference_number, model_id)
        if image_index in job.images:
            self.release_inputs(1)
        else:
            job.held += 1
        job.images[image_index] = (header, payload)
        if len(job.images) >= max(total_image, 1):
            self.collecting = None
            self.image_queue.append(job)
            self.wake("npu")
        else:
            self.wake()

    # -- worker --------------------------------------------------------------------------
    def take_result_buffer(self) -> bool:
        if self.free_results > 0:
            self.free_results -= 1
            return True
        return False

    def push_result(self, message: bytes) -> None:
        self.result_queue.append(message)
        self.wake("tx")

    def release_result(self, count: int = 1) -> None:
        self.free_results = min(self.result_count, self.free_results + count)
        self.wake("results")

    # -- control 0x80 ----------------------------------------------------------------------
    def reset(self) -> None:
        """Discard queued images and results (their buffers become free), drop the
        partly collected inference, clear the frame-drop flag. A job inside the worker
        finishes normally (§7.5)."""
        freed_inputs = sum(job.held for job in self.image_queue)
        if self.collecting is not None:
            freed_inputs += self.collecting.held
            self.collecting = None
        self.image_queue.clear()
        self.release_inputs(freed_inputs)
        self.release_result(len(self.result_queue))
        self.result_queue.clear()
        self.frame_drop = False
        self.wake("rx", "npu", "results", "tx")
