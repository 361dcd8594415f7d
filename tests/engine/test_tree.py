"""UCT arithmetic, phi and selection on hand-made trees (ALGORITHM.md section 2)."""

import math

import numpy as np
import pytest

from search.engine.tree import Node, Tree, backpropagate, best_child, phi, select, uct_score

FLEET = {"small": 135e6, "mid": 270e6, "large": 494e6}


def make(tree, parent, *, visits=0, value=0.0, model=None):
    node = tree.add(parent, None, shash=f"h{len(tree.nodes)}", expand_model=model)
    node.visits, node.value = visits, value
    return node


def test_phi_is_one_for_smallest_zero_for_largest_log_linear_between():
    assert phi("small", FLEET) == 1.0
    assert phi("large", FLEET) == 0.0
    expected = (math.log(494e6) - math.log(270e6)) / (math.log(494e6) - math.log(135e6))
    assert phi("mid", FLEET) == pytest.approx(expected)
    assert 0.0 < phi("mid", FLEET) < 1.0


def test_phi_without_a_fleet_or_for_unknown_models_is_zero():
    assert phi(None, FLEET) == 0.0
    assert phi("other", FLEET) == 0.0
    assert phi("small", {"small": 1e8}) == 0.0
    assert phi("a", {"a": 1e8, "b": 1e8}) == 0.0


def test_uct_score_formula():
    tree = Tree()
    child = make(tree, tree.root, visits=4, value=2.0)
    score = uct_score(child, 10, lam=0.2, c=math.sqrt(2), phi_value=0.5)
    expected = 0.8 * (2.0 / 4) + 0.2 * 0.5 + math.sqrt(2) * math.sqrt(math.log(10) / 4)
    assert score == pytest.approx(expected)
    assert uct_score(make(tree, tree.root), 10, lam=0.2, c=1.0, phi_value=0.0) == math.inf


def test_lambda_prefers_the_smaller_model_between_equal_children():
    tree = Tree()
    parent = make(tree, tree.root, visits=10, value=5.0)
    large = make(tree, parent, visits=4, value=2.0, model="large")
    small = make(tree, parent, visits=4, value=2.0, model="small")
    assert best_child(parent, lam=0.2, c=1.0, params=FLEET) is small
    assert best_child(parent, lam=0.0, c=1.0, params=FLEET) is large  # a tie: the first one


def test_lambda_is_ignored_when_all_children_share_one_model():
    tree = Tree()
    parent = make(tree, tree.root, visits=10, value=5.0)
    rare = make(tree, parent, visits=1, value=0.5, model="large")  # mean 0.5, large exploration
    good = make(tree, parent, visits=8, value=7.2, model="large")  # mean 0.9
    # lam = 0 (ignored): 0.5 + 0.455 < 0.9 + 0.161, the better mean wins
    assert best_child(parent, lam=0.9, c=0.3, params=FLEET) is good
    # had lam = 0.9 been applied, exploitation would shrink to a tenth and the rare child win
    assert uct_score(rare, 10, lam=0.9, c=0.3, phi_value=0.0) > uct_score(good, 10, lam=0.9, c=0.3, phi_value=0.0)
    # with two models in the family, lam applies
    make(tree, parent, visits=8, value=0.0, model="small")
    assert best_child(parent, lam=0.9, c=0.3, params=FLEET).expand_model == "small"


def test_higher_mean_wins_and_exploration_favors_the_less_visited():
    tree = Tree()
    parent = make(tree, tree.root, visits=20, value=10.0)
    often = make(tree, parent, visits=16, value=9.6)  # mean 0.6
    rarely = make(tree, parent, visits=2, value=1.0)  # mean 0.5
    assert best_child(parent, lam=0.0, c=0.0, params={}) is often
    assert best_child(parent, lam=0.0, c=math.sqrt(2), params={}) is rarely


def test_unvisited_children_come_first_the_smaller_model_first():
    tree = Tree()
    parent = make(tree, tree.root, visits=5, value=5.0)
    make(tree, parent, visits=3, value=3.0, model="small")
    big = make(tree, parent, visits=0, model="large")
    mid = make(tree, parent, visits=0, model="mid")
    assert best_child(parent, lam=0.0, c=1.0, params=FLEET) is mid
    mid.visits = 1
    assert best_child(parent, lam=0.0, c=1.0, params=FLEET) is big


def test_select_takes_an_unvisited_root_child_at_random():
    tree = Tree()
    kids = [make(tree, tree.root) for _ in range(3)]
    rng = np.random.default_rng(0)
    picked = {select(tree, branching=2, lam=0.0, c=1.0, params={}, rng=rng).id for _ in range(40)}
    assert picked == {k.id for k in kids}


def test_select_stops_at_an_inner_node_with_fewer_than_b_children():
    tree = Tree()
    a = make(tree, tree.root, visits=3, value=3.0)
    b = make(tree, tree.root, visits=1, value=0.1)
    a1 = make(tree, a, visits=1, value=1.0)
    rng = np.random.default_rng(0)
    # a has one child (< B=2): selection stops at a, the better root child
    assert select(tree, branching=2, lam=0.0, c=0.0, params={}, rng=rng) is a
    a2 = make(tree, a, visits=1, value=1.0)
    # a is full now: descend to its children, which are leaves with no children (< B)
    assert select(tree, branching=2, lam=0.0, c=0.0, params={}, rng=rng) in (a1, a2)
    assert b.visits == 1


def test_dead_ends_are_skipped_and_full_nodes_of_dead_children_die():
    tree = Tree()
    a = make(tree, tree.root, visits=4, value=4.0)
    b = make(tree, tree.root, visits=1, value=0.1)
    a1 = make(tree, a, visits=1, value=1.0)
    a2 = make(tree, a, visits=1, value=1.0)
    a1.dead = a2.dead = True
    rng = np.random.default_rng(0)
    assert select(tree, branching=2, lam=0.0, c=0.0, params={}, rng=rng) is b
    assert a.dead
    b.dead = True
    assert select(tree, branching=2, lam=0.0, c=0.0, params={}, rng=rng) is None


def test_max_depth_stops_expansion():
    tree = Tree()
    a = make(tree, tree.root, visits=2, value=1.0)
    a1 = make(tree, a, visits=1, value=1.0)
    rng = np.random.default_rng(0)
    # a is at depth 1 == max_depth: it cannot take a second child, and its only child is deeper
    assert select(tree, branching=2, lam=0.0, c=0.0, params={}, rng=rng, max_depth=1) is None
    assert a1.dead and a.dead


def test_backpropagate_updates_every_node_on_the_path():
    tree = Tree()
    a = make(tree, tree.root)
    a1 = make(tree, a)
    ids = backpropagate(a1, 0.7)
    assert ids == [a1.id, a.id, 0]
    assert [n.visits for n in (a1, a, tree.root)] == [1, 1, 1]
    assert a.value == pytest.approx(0.7)
    backpropagate(a, 0.0)
    assert a.visits == 2 and a1.visits == 1 and tree.root.value == pytest.approx(0.7)


def test_nodes_use_slots():
    with pytest.raises(AttributeError):
        Node(1, None).unexpected = 1
