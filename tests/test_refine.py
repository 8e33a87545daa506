"""cluster_tracklets: how looks, evidence of each pair's own and constraints weigh a re-solve."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.refine import cluster_tracklets

# Tracklets 0, 1 are one person's in camera a, 2, 3 the same person's in camera b: each camera's pair looks
# alike, and across cameras every comparison says "different" (a change of view), -1.5 each.
LOOKS = np.array(
    [
        [np.nan, 3.0, -1.5, -1.5],
        [3.0, np.nan, -1.5, -1.5],
        [-1.5, -1.5, np.nan, 3.0],
        [-1.5, -1.5, 3.0, np.nan],
    ]
)
NOTHING_FORBIDDEN = np.zeros((4, 4), bool)
ALIKE = np.where(np.isnan(LOOKS), np.nan, np.maximum(LOOKS, 1.0))  # the two people look alike: +1 across


def geometry(value: float = 4.0) -> np.ndarray:
    """Evidence of tracklets 1 and 2 walking at corresponding places in overlapping views."""
    evidence = np.zeros((4, 4))
    evidence[1, 2] = evidence[2, 1] = value
    return evidence


def test_looks_alone_keep_the_two_views_apart() -> None:
    labels = cluster_tracklets(LOOKS, NOTHING_FORBIDDEN)
    assert labels.tolist() == [0, 0, 1, 1]


def test_a_pairs_own_evidence_adds_to_the_mean_look_and_joins_the_views() -> None:
    labels = cluster_tracklets(LOOKS, NOTHING_FORBIDDEN, evidence=geometry())
    assert labels.tolist() == [0, 0, 0, 0]
    # the same evidence counted as one more comparison of looks is outvoted by the others
    averaged = LOOKS.copy()
    averaged[1, 2] = averaged[2, 1] = 4.0
    assert len(set(cluster_tracklets(averaged, NOTHING_FORBIDDEN).tolist())) == 2


def test_weak_evidence_does_not_outweigh_looks_that_disagree() -> None:
    labels = cluster_tracklets(LOOKS, NOTHING_FORBIDDEN, evidence=geometry(1.0))
    assert labels.tolist() == [0, 0, 1, 1]


def test_evidence_alone_links_tracklets_without_looks() -> None:
    no_looks = np.full((4, 4), np.nan)
    labels = cluster_tracklets(no_looks, NOTHING_FORBIDDEN, evidence=geometry())
    assert labels.tolist() == [0, 1, 1, 2]


def test_no_evidence_overrides_a_forbidden_pair() -> None:
    forbidden = NOTHING_FORBIDDEN.copy()
    forbidden[0, 3] = forbidden[3, 0] = True
    labels = cluster_tracklets(LOOKS, forbidden, evidence=geometry(40.0))
    assert labels[0] != labels[3]


def test_an_initial_member_that_does_not_fit_is_detached() -> None:
    scores = LOOKS.copy()
    scores[0, 1] = scores[1, 0] = -2.0  # 0 and 1 no longer look alike
    labels = cluster_tracklets(scores, NOTHING_FORBIDDEN, initial=[0, 0, 1, 1])
    assert labels[0] != labels[1] and labels[2] == labels[3]
    # evidence of the pair's own (a lost track restarting where it led) keeps it
    motion = np.zeros((4, 4))
    motion[0, 1] = motion[1, 0] = 3.0
    kept = cluster_tracklets(scores, NOTHING_FORBIDDEN, initial=[0, 0, 1, 1], evidence=motion)
    assert kept.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(("weak_link", "expected"), [(0.3, [0, 0, 0, 1, 1]), (1.5, [0, 0, 0, 0, 0])])
def test_an_initial_group_comes_apart_where_its_parts_weigh_against_one_another(
    weak_link: float, expected: list[int]
) -> None:
    """Online, one person's tracklets 0-2 and another's 3-4 became one identity through a weak link
    (0 with 3). Each member fits the rest of the group on average, but the two parts, clustered afresh,
    weigh (weak_link - 7) / 3 as a merge: -2.23 comes apart, -1.83 stays one."""
    scores = np.full((5, 5), np.nan)
    for i, j, value in [(0, 1, 4.0), (1, 2, 4.0), (3, 4, 4.0), (0, 3, weak_link), (2, 3, -3.5), (1, 4, -3.5)]:
        scores[i, j] = scores[j, i] = value
    labels = cluster_tracklets(scores, np.zeros((5, 5), bool), initial=[0, 0, 0, 0, 0])
    assert labels.tolist() == expected


def test_an_initial_group_the_constraints_no_longer_allow_loses_members_until_they_do() -> None:
    # online, tracklet 3 joined 0 and 1 (a return to camera a, say) because of a sighting in between that
    # a later decision moved away (tracklet 2): the group that is left is not one the constraints allow
    def returns_need_tracklet_2(members) -> bool:
        return not ({0, 3} <= set(members) and 2 not in members)

    scores = np.where(np.isnan(LOOKS), np.nan, 2.0)  # everyone looks alike
    scores[2, :] = scores[:, 2] = np.nan  # 2 has no looks: nothing joins it to the others again
    np.fill_diagonal(scores, np.nan)
    labels = cluster_tracklets(
        scores, NOTHING_FORBIDDEN, initial=[0, 0, 1, 0], allowed=returns_need_tracklet_2
    )
    assert labels[0] != labels[3]
    assert returns_need_tracklet_2([m for m in range(4) if labels[m] == labels[0]])


def unseen_between_the_two_people(members) -> float:
    """A cost of the whole cluster: -2 where it holds tracklets of both people (say, a long time apart)."""
    return -2.0 if {0, 1} & set(members) and {2, 3} & set(members) else 0.0


def test_a_cost_of_the_whole_cluster_weighs_against_a_merge() -> None:
    assert cluster_tracklets(ALIKE, NOTHING_FORBIDDEN).tolist() == [0, 0, 0, 0]
    labels = cluster_tracklets(ALIKE, NOTHING_FORBIDDEN, cost=unseen_between_the_two_people)
    assert labels.tolist() == [0, 0, 1, 1]


def test_an_initial_member_that_costs_its_group_more_than_it_fits_is_detached() -> None:
    def far_from_the_first(members) -> float:  # tracklet 3 seen long after 0 and 1, say
        return -4.0 if 3 in members and {0, 1} & set(members) else 0.0

    labels = cluster_tracklets(ALIKE, NOTHING_FORBIDDEN, initial=[0, 0, 0, 0], cost=far_from_the_first)
    assert labels.tolist() == [0, 0, 0, 1]


def test_a_merge_that_lowers_a_cost_earns_nothing_for_it() -> None:
    # every cluster that does not hold both people costs -5, both together nothing (a merge would fill
    # a gap): their looks, -1.5 across the cameras, still keep them apart
    def gap_filled(members) -> float:
        return 0.0 if {0, 1} & set(members) and {2, 3} & set(members) else -5.0

    assert cluster_tracklets(LOOKS, NOTHING_FORBIDDEN, cost=gap_filled).tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(("between", "expected"), [(8.0, [0, 1, 0, 0]), (4.0, [0, 0, 1, 1])])
def test_a_member_that_holds_one_persons_clusters_apart_is_freed(between: float, expected: list[int]) -> None:
    """Tracklets 0 (camera a) and 1 (camera b) walk together (+4), and so do 2 and 3 later; 0, 2 and 3
    look alike (+1), 1 was not compared. Track 1 then switched to someone else where 3 cannot be
    (forbidden), so the live decisions' two clusters cannot merge. With two pieces of evidence that 2
    continues 0 (+8), the merge without 1 is worth 9 against 1's link with 0 of 4: 1 leaves. With one
    (+4), 5 against 4 is not worth FREEING_MARGIN (2), and the clusters stay."""
    looks = np.full((4, 4), np.nan)
    for i, j in ((0, 2), (0, 3), (2, 3)):
        looks[i, j] = looks[j, i] = 1.0
    evidence = np.zeros((4, 4))
    for i, j, value in ((0, 1, 4.0), (2, 3, 4.0), (0, 2, between)):
        evidence[i, j] = evidence[j, i] = value
    forbidden = NOTHING_FORBIDDEN.copy()
    forbidden[1, 3] = forbidden[3, 1] = True
    labels = cluster_tracklets(looks, forbidden, evidence=evidence, initial=[0, 0, 1, 1])
    assert labels.tolist() == expected


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        cluster_tracklets(LOOKS, NOTHING_FORBIDDEN, evidence=np.zeros((3, 3)))


def test_tracklets_without_looks_join_the_cluster_their_motion_leads_to_and_never_join_two() -> None:
    # 0 and 1 look like two people; 2 and 3 are the two pieces of a track lost before its first crop,
    # which motion leads on from 0 (strongly) and on to 1 (less so)
    scores = np.full((4, 4), np.nan)
    scores[0, 1] = scores[1, 0] = -3.0
    pieces = np.zeros((4, 4))
    pieces[2, 3] = pieces[3, 2] = 2.0
    motion = np.zeros((4, 4))
    motion[0, 2] = motion[2, 0] = 1.7
    motion[3, 1] = motion[1, 3] = 1.5
    assert cluster_tracklets(scores, NOTHING_FORBIDDEN, evidence=pieces).tolist() == [0, 1, 2, 2]
    labels = cluster_tracklets(scores, NOTHING_FORBIDDEN, evidence=pieces, attachments=motion)
    assert labels.tolist() == [0, 1, 0, 0]
    # where the looks of 0 and 1 disagree less than the motion on to 1 agrees, the track leads them together
    weaker = np.where(np.isnan(scores), np.nan, -1.0)
    labels = cluster_tracklets(weaker, NOTHING_FORBIDDEN, evidence=pieces, attachments=motion)
    assert labels.tolist() == [0, 0, 0, 0]
    forbidden = NOTHING_FORBIDDEN.copy()
    forbidden[0, 3] = forbidden[3, 0] = True
    labels = cluster_tracklets(scores, forbidden, evidence=pieces, attachments=motion)
    assert labels.tolist() == [0, 1, 1, 1]


def test_weights_let_a_hand_over_go_by_how_its_person_looked_just_before() -> None:
    # 0 and 1: one person in camera a, 25 s apart, joined by motion; 2: camera b just after 1, alike 1
    # (+3) but not 0 (-3.3), whose crops were taken long before (a person's likeness drifts)
    scores = np.array([[np.nan, 0.6, -3.3], [0.6, np.nan, 3.0], [-3.3, 3.0, np.nan]])
    motion = np.zeros((3, 3))
    motion[0, 1] = motion[1, 0] = 3.4
    nothing = np.zeros((3, 3), bool)
    assert cluster_tracklets(scores, nothing, evidence=motion).tolist() == [0, 0, 1]  # mean -0.15
    near = np.ones((3, 3))
    near[0, 2] = near[2, 0] = 1 / 6  # 25 s apart, at 5 s a share
    assert cluster_tracklets(scores, nothing, evidence=motion, weights=near).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="weights must be > 0"):
        cluster_tracklets(scores, nothing, weights=np.zeros((3, 3)))


def test_weights_do_not_soften_what_takes_an_online_identity_apart() -> None:
    # the weakly linked identity of test_an_initial_group_comes_apart_... (its parts weigh -2.23), its two
    # people seen far apart in time: at a quarter share per pair across them, its parts would weigh -1.68
    scores = np.full((5, 5), np.nan)
    for i, j, value in [(0, 1, 4.0), (1, 2, 4.0), (3, 4, 4.0), (0, 3, 0.3), (2, 3, -3.5), (1, 4, -3.5)]:
        scores[i, j] = scores[j, i] = value
    far = np.ones((5, 5))
    far[:3, 3:] = far[3:, :3] = 0.25
    labels = cluster_tracklets(scores, np.zeros((5, 5), bool), initial=[0, 0, 0, 0, 0], weights=far)
    assert labels.tolist() == [0, 0, 0, 1, 1]
