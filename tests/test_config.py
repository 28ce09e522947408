"""The params schemas (whisper_ko.config): params.yaml and docs/params.md agree with them, the
trainer gets exactly the settings it shares with them, and reading them stays quick."""

import dataclasses
import subprocess
import sys

import yaml

from conftest import REPO
from whisper_ko import config

sys.path.insert(0, str(REPO / "tools"))
import params_doc


def test_docs_params_md_is_generated_from_the_schemas():
    written = (REPO / "docs" / "params.md").read_text(encoding="utf-8")
    assert written == params_doc.render(), "docs/params.md is out of date: run `python tools/params_doc.py`"


def test_every_key_in_params_yaml_is_a_setting_of_the_schemas_and_the_file_loads():
    def walk(values: dict, cls: type[config.Settings]) -> None:
        for key, value in values.items():
            assert key in cls.model_fields, f"{cls.where}.{key} is no setting of config.{cls.__name__}"
            kind = cls.model_fields[key].annotation
            if isinstance(kind, type) and issubclass(kind, config.Settings):
                walk(value, kind)

    document = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert set(document) == set(config.SECTIONS)
    for name, values in document.items():
        walk(values, config.SECTIONS[name])
    loaded = config.load(REPO / "params.yaml", *config.SECTIONS)
    assert [type(section) for section in loaded] == list(config.SECTIONS.values())


def test_the_trainer_gets_the_train_settings_it_has_too():
    from transformers import Seq2SeqTrainingArguments

    trainer = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    passed = set(config.Train().trainer_args())
    assert passed == (set(config.Train.model_fields) & trainer) - config.SET_BY_TRAINING
    assert "learning_rate" in passed and "method" not in passed and "eval_steps" not in passed
    assert passed == {  # the list that was copied by hand before
        "learning_rate",
        "lr_scheduler_type",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "max_grad_norm",
        "seed",
        "dataloader_num_workers",
        "dataloader_persistent_workers",
        "logging_steps",
        "save_total_limit",
    }
    assert config.Train(average_checkpoints=3).trainer_args()["save_total_limit"] is None  # KeepBest keeps them


def test_reading_the_config_imports_neither_torch_nor_transformers():
    code = "import sys, whisper_ko.config; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
