import json
from dataclasses import dataclass

from kidneyct.preprocess import AUGMENTATIONS, Augmentation, Preprocessing
from kidneyct.records import DictRecord


@dataclass(frozen=True)
class Settings(DictRecord):
    size: int = 224
    name: str = "a"


def test_from_dict_reads_what_another_version_wrote():
    assert Settings(96, "b").to_dict() == {"size": 96, "name": "b"}
    assert Settings.from_dict({"size": 96, "added_later": True}) == Settings(96)  # unknown keys ignored
    assert Settings.from_dict({}) == Settings()  # missing keys take the defaults


def test_stored_settings_survive_json():
    prep = Preprocessing(96, mean=0.449, std=0.226, body_crop=True)
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    augmentation = next(iter(AUGMENTATIONS.values()))
    assert Augmentation.from_dict(json.loads(json.dumps(augmentation.to_dict()))) == augmentation  # scale a tuple again
