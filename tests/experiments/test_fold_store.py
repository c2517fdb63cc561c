"""A stored fold is reused only for the same experiment, also after kidneyct gained settings."""

from kidneyct.config import TrainConfig
from kidneyct.experiments.fold_store import fold_identity, same_experiment


def _identity(**changes) -> dict:
    return fold_identity(TrainConfig(data="d", out="o", **changes), ["a.png", "b.png"])


def test_a_setting_added_since_the_fold_was_stored_matches_at_its_default():
    stored = _identity()
    del stored["settings"]["enhancing_tumors"]  # as a fold stored before the option existed
    assert same_experiment(stored, _identity())
    assert not same_experiment(stored, _identity(enhancing_tumors=0.3)), "a new option at work is another experiment"


def test_changed_settings_or_test_images_are_another_experiment():
    stored = _identity()
    assert same_experiment(stored, _identity())
    assert not same_experiment(stored, _identity(epochs=3))
    assert not same_experiment(stored, fold_identity(TrainConfig(data="d", out="o"), ["a.png"]))
    missing = _identity()
    del missing["settings"]["epochs"]  # a stored fold cannot lack a setting the config sets otherwise than default
    assert not same_experiment(missing, _identity(epochs=3))
