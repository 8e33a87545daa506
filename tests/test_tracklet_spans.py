"""Tracklet spans: where a lost track's motion leads, and whether a later track continues it."""

from __future__ import annotations

from pipeline.tracklet_spans import OpenTracklet, Span, continuation_miss

FPS = 7.0


def walk(heights: list[float], first_frame: int, x0: float, track_id: int) -> OpenTracklet:
    """A track walking right at 14 px/s, its boxes `heights` tall, their feet on one line (y = 300)."""
    tracklet = OpenTracklet(
        "a", first_frame, first_frame, first_frame / FPS, first_frame / FPS, track_id=track_id
    )
    for k, height in enumerate(heights):
        frame = first_frame + k
        x = x0 + 2.0 * k
        tracklet.moved_to((x, 300.0 - height, x + height / 2.5, 300.0), frame / FPS, frame)
        tracklet.last_frame, tracklet.last_time = frame, frame / FPS
    return tracklet


def closed(tracklet: OpenTracklet, end_height: float | None) -> Span:
    return Span(
        tracklet.camera, tracklet.first_frame, tracklet.last_frame, tracklet.first_time, tracklet.last_time,
        tracklet.first_box, tracklet.last_box, tracklet.velocity, tracklet.track_id, end_height=end_height,
    )  # fmt: skip


def test_a_track_lost_behind_something_is_continued_at_its_height_before_it_was_hidden() -> None:
    # As the tracker loses someone behind something, its last two boxes hold what is still seen of them
    # (89 px, then 60 and 47, as on PETS09-S2L1); 1.7 s later a track begins where they were heading,
    # at their height
    earlier = walk([89.0] * 8 + [60.0, 47.0], first_frame=0, x0=100.0, track_id=1)
    later = closed(walk([80.0] * 5, first_frame=21, x0=142.0, track_id=2), None)
    assert earlier.typical_end_height() == 89.0
    assert continuation_miss(closed(earlier, None), later) > 1.0  # from the last box: no continuation
    assert continuation_miss(closed(earlier, earlier.typical_end_height()), later) <= 1.0
    # someone twice as tall is no continuation of either
    taller = closed(walk([160.0] * 5, first_frame=21, x0=142.0, track_id=3), None)
    assert continuation_miss(closed(earlier, earlier.typical_end_height()), taller) > 1.0
