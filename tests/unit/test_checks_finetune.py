"""Fine-tuning on the evaluated split is refused before any job."""

import copy

import pytest
import yaml

from cuealign.workflow.checks import ConfigError, check_config
from cuealign.workflow.config import validate_config
from tests.workflow.conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize(
    "split, evaluate",
    [("test", "test"), ("all", "test"), ("train", "all")],
)
def test_training_on_the_evaluated_split_is_an_error(split, evaluate):
    config = copy.deepcopy(DEFAULT)
    config["finetune"]["demo-alm"]["split"] = split
    config["evaluate_split"] = evaluate
    with pytest.raises(
        ConfigError, match=r"finetune.demo-alm.split is .* the model would be tested on utterances it was"
    ):
        check_config(validate_config(config))
    config["finetune"]["demo-alm"]["allow_evaluated_split"] = True
    check_config(validate_config(config))
