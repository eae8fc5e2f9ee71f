"""Generator input: iterables of batches, lists of batches, indexed datasets (PyDataset),
steps, exhaustion and errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pycnn
from pycnn import layers, regularizers
from training_helpers import _compiled, _data


# ----------------------------------------------------------------------------- generators


def _batches(x, y, size, weights=None):
    for start in range(0, len(x), size):
        sl = slice(start, start + size)
        yield (x[sl], y[sl]) if weights is None else (x[sl], y[sl], weights[sl])


def test_generator_with_steps_equals_unshuffled_arrays(rng):
    x, y = _data(rng, 40)
    a, b = _compiled(9), _compiled(9)

    def forever():
        while True:
            yield from _batches(x, y, 10)

    ha = a.fit(forever(), steps_per_epoch=4, epochs=3, verbose=0).history
    hb = b.fit(x, y, batch_size=10, epochs=3, shuffle=False, verbose=0).history
    for key in hb:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_a_list_of_batches_and_weighted_batches(rng):
    x, y = _data(rng, 24)
    w = rng.random(24).astype(np.float32)
    a, b = _compiled(2), _compiled(2)
    ha = a.fit(list(_batches(x, y, 8, w)), epochs=2, validation_data=list(_batches(x, y, 8)), verbose=0).history
    hb = b.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, validation_data=(x, y),
               verbose=0).history
    for key in hb:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)


class _Sequence:
    """A PyDataset-like object: __len__, __getitem__ and on_epoch_end."""

    def __init__(self, x, y):
        self.x, self.y, self.ends = x, y, 0

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self.x[i * 5:(i + 1) * 5], self.y[i * 5:(i + 1) * 5]

    def on_epoch_end(self):
        self.ends += 1


def test_an_indexed_dataset_runs_its_length_and_is_told_the_epoch_ended(rng):
    x, y = _data(rng, 15)
    seq = _Sequence(x, y)
    model = _compiled()
    seen = []

    class Count(pycnn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    model.fit(seq, epochs=2, verbose=0, callbacks=[Count()])
    assert seen == [0, 1, 2, 0, 1, 2] and seq.ends == 2
    assert model.evaluate(seq) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    np.testing.assert_allclose(model.predict(seq), model.predict(x), rtol=1e-6)


def test_an_exhausted_generator_warns_and_stops(rng):
    x, y = _data(rng, 20)
    model = _compiled()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = model.fit(_batches(x, y, 10), steps_per_epoch=3, epochs=4, verbose=0)
    assert len(h.history["loss"]) == 1


def test_generator_errors(rng):
    x, y = _data(rng, 10)
    model = _compiled()
    with pytest.raises(ValueError, match="pass y=None"):
        model.fit(_batches(x, y, 5), y, verbose=0)
    with pytest.raises(ValueError, match=r"tuple \(x, y\)"):
        model.fit(iter([x[:5]]), verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(_batches(x, y, 5), validation_split=0.2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(list(_batches(x, y, 5)), epochs=2, verbose=0)  # a list is re-iterable: no warning


def test_matches_keras_weighting_when_installed(rng):
    """sample_weight, class_weight and weighted_metrics against Keras 3 on the same weights."""
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    x, y = _data(rng, 32)
    y = y[:, None]  # Keras broadcasts mae's (N, 1) labels over the outputs, refuses (N,)
    w = rng.random(32).astype(np.float32) * 2
    ours = _compiled(11)
    theirs = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
                               keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    theirs.set_weights(ours.get_weights())
    theirs.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2), "mae"],
                   weighted_metrics=["accuracy"])
    a = ours.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True)
    b = theirs.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    cw = {0: 2.0, 2: 0.25}
    ha = ours.fit(x, y, class_weight=cw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    hb = theirs.fit(x, y, class_weight=cw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=2e-3, err_msg=key)


def test_the_conv_family_takes_regularizers_too():
    sep = layers.SeparableConv2D(4, 3, depthwise_regularizer="l2", pointwise_regularizer=regularizers.l1(0.5),
                                 bias_regularizer="l1")
    dw = layers.DepthwiseConv2D(3, depthwise_regularizer=regularizers.l2(0.1))
    sep.build((None, 6, 6, 2))
    dw.build((None, 6, 6, 2))
    d, p, _ = sep.get_weights()
    assert sep.losses == pytest.approx([0.01 * float((d.astype(np.float64) ** 2).sum()),
                                        0.5 * float(np.abs(p).sum()), 0.0])
    assert dw.losses == pytest.approx([0.1 * float((dw.get_weights()[0].astype(np.float64) ** 2).sum()), ])
    clone = layers.SeparableConv2D.from_config(sep.get_config())
    assert clone.pointwise_regularizer == regularizers.L1(0.5) and clone.bias_regularizer == regularizers.L1(0.01)


def test_a_generator_of_unknown_length_shows_unknown_steps_in_the_first_epoch(rng, capsys):
    x, y = _data(rng, 10)
    model = _compiled()
    batches = list(_batches(x, y, 5))
    model.fit(iter(batches), epochs=1, verbose=2)
    assert "2/Unknown" in capsys.readouterr().out
