from __future__ import annotations

import numpy as np
import pytest

from kp_runtime.compare import load_feeds, random_feeds

from .models import linear, mixed_inputs, session, weights


def test_random_feeds_match_input_types_and_shapes() -> None:
    sess = session(mixed_inputs())
    feeds = random_feeds(sess, 3, seed=7, shapes={"f": (2, 3)})
    assert len(feeds) == 3
    feed = feeds[0]
    assert {k: (v.dtype, v.shape) for k, v in feed.items()} == {
        "f": (np.float32, (2, 3)),
        "i": (np.int64, (2,)),
        "u": (np.uint8, (4,)),
        "b": (np.bool_, (2,)),
    }
    # the session accepts them as they are
    outputs = sess.run(None, feed)
    np.testing.assert_array_equal(outputs[0], feed["f"])


def test_symbolic_dims_default_to_dim_value() -> None:
    sess = session(linear(weights()))
    assert random_feeds(sess)[0]["x"].shape == (1, 6)
    assert random_feeds(sess, dim_value=4)[0]["x"].shape == (4, 6)


def test_value_range_is_respected_per_input() -> None:
    sess = session(mixed_inputs())
    feeds = random_feeds(sess, 20, value_range={"f": (-3.0, -2.0), "": (5, 9)})
    f = np.concatenate([x["f"] for x in feeds])
    u = np.concatenate([x["u"] for x in feeds])
    assert f.min() >= -3.0 and f.max() <= -2.0
    assert u.min() >= 5 and u.max() <= 9 and len(np.unique(u)) > 2


def test_random_feeds_are_reproducible_per_index() -> None:
    sess = session(linear(weights()))
    a = random_feeds(sess, 5, seed=1)
    b = random_feeds(sess, 5, seed=1)
    np.testing.assert_array_equal(a[3]["x"], list(b)[3]["x"])
    np.testing.assert_array_equal(a[-1]["x"], a[4]["x"])
    assert not np.array_equal(a[0]["x"], a[1]["x"])
    assert not np.array_equal(a[0]["x"], random_feeds(sess, 1, seed=2)[0]["x"])
    assert len(a[1:3]) == 2
    with pytest.raises(IndexError):
        a[5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n must"),
        ({"value_range": (1.0, 0.0)}, ValueError, "low <= high"),
        ({"value_range": (0.0, float("inf"))}, ValueError, "finite"),
        ({"value_range": "wide"}, ValueError, "value range"),
        ({"shapes": {"y": (1, 6)}}, ValueError, "unknown inputs"),
        ({"shapes": {"x": (1, 7)}}, ValueError, "dim 1 must be 6"),
        ({"shapes": {"x": (6,)}}, ValueError, "rank"),
        ({"dim_value": -1}, ValueError, "dim_value"),
    ],
)
def test_random_feed_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        random_feeds(session(linear(weights())), **kwargs)


def test_integer_range_outside_the_dtype_is_an_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        random_feeds(session(mixed_inputs()), value_range={"u": (300, 400)})


class _Arg:
    def __init__(self, name, type, shape):
        self.name, self.type, self.shape = name, type, shape


def test_non_tensor_and_string_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="numeric tensors"):
        random_feeds([_Arg("s", "tensor(string)", [1])])
    with pytest.raises(TypeError, match="numeric tensors"):
        random_feeds([_Arg("q", "seq(tensor(float))", [])])
    with pytest.raises(TypeError, match="NodeArg"):
        random_feeds([object()])


# -- files ----------------------------------------------------------------------------------------


def test_npz_and_npy_files(tmp_path) -> None:
    sess = session(linear(weights()))
    x = np.ones((2, 6), np.float32)
    np.savez(tmp_path / "named.npz", x=x)
    np.savez(tmp_path / "anon.npz", x)
    np.save(tmp_path / "one.npy", x)
    for name in ("named.npz", "anon.npz", "one.npy"):
        feeds = load_feeds(tmp_path / name, sess)
        assert len(feeds) == 1
        np.testing.assert_array_equal(feeds[0]["x"], x)
    # without a session, .npz keys are taken as they are
    assert list(load_feeds(tmp_path / "named.npz")[0]) == ["x"]
    with pytest.raises(ValueError, match="pass the session"):
        load_feeds(tmp_path / "one.npy")[0]


def test_folder_of_feeds_in_natural_order(tmp_path) -> None:
    sess = session(linear(weights()))
    for i in (10, 2, 1):
        np.save(tmp_path / f"sample{i}.npy", np.full((1, 6), i, np.float32))
    (tmp_path / "README.txt").write_text("not a feed")
    feeds = load_feeds(tmp_path, sess)
    assert [int(f["x"][0, 0]) for f in feeds] == [1, 2, 10]
    assert len(load_feeds(tmp_path, sess, limit=2)) == 2


def test_folder_of_multi_input_samples(tmp_path) -> None:
    sess = session(mixed_inputs())
    sample = {"f": np.zeros((1, 3), np.float32), "i": np.arange(2), "u": np.zeros(4, np.uint8), "b": np.ones(2, bool)}
    for k, v in sample.items():
        np.save(tmp_path / f"{k}.npy", v)
    one = load_feeds(tmp_path, sess)
    assert len(one) == 1 and set(one[0]) == set(sample)
    root = tmp_path / "many"
    for j in range(3):
        (root / f"s{j}").mkdir(parents=True)
        for k, v in sample.items():
            np.save(root / f"s{j}" / f"{k}.npy", v)
    many = load_feeds(root, sess)
    assert len(many) == 3
    sess.run(None, many[2])


def test_file_errors(tmp_path) -> None:
    sess = session(linear(weights()))
    with pytest.raises(FileNotFoundError):
        load_feeds(tmp_path / "absent.npz", sess)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="expected an .npz or .npy"):
        load_feeds(tmp_path / "x.txt", sess)
    np.savez(tmp_path / "wrong.npz", y=np.ones(6), z=np.ones(6))
    with pytest.raises(ValueError, match=r"do not match the model's inputs \['x'\]"):
        load_feeds(tmp_path / "wrong.npz", sess)[0]
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_feeds(tmp_path / "objects.npy", sess)[0]
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_feeds(tmp_path / "broken.npz", sess)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .npz/.npy"):
        load_feeds(empty, sess)
    with pytest.raises(ValueError, match="limit"):
        load_feeds(tmp_path / "wrong.npz", sess, limit=0)


def test_npz_with_a_leading_sample_axis_is_one_feed_per_sample(tmp_path) -> None:
    sess = session(linear(weights()))
    samples = np.arange(4 * 2 * 6, dtype=np.float32).reshape(4, 2, 6)
    np.savez(tmp_path / "calibration.npz", x=samples)
    feeds = load_feeds(tmp_path / "calibration.npz", sess)
    assert len(feeds) == 4
    for i, feed in enumerate(feeds):
        np.testing.assert_array_equal(feed["x"], samples[i])
        sess.run(None, feed)
    assert len(load_feeds(tmp_path / "calibration.npz", sess, limit=3)) == 3
    # without a session the file is one feed, keys as they are
    assert load_feeds(tmp_path / "calibration.npz")[0]["x"].shape == (4, 2, 6)


def test_batched_npz_needs_equal_sample_counts(tmp_path) -> None:
    sess = session(mixed_inputs())
    arrays = {"f": np.zeros((3, 1, 3), np.float32), "i": np.zeros((2, 2), np.int64),
              "u": np.zeros((3, 4), np.uint8), "b": np.zeros((3, 2), bool)}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="same, non-zero number of samples"):
        load_feeds(tmp_path / "bad.npz", sess)
