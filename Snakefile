from snakemake.utils import min_version

from cuealign.workflow.checks import check_config
from cuealign.workflow.config import refuse_templates, validate_config
from cuealign.workflow.folds import expand_folds

min_version("9.0")
# before config.yaml is loaded: a templated config (__use_yte__) would run code as it loads
refuse_templates(["config.yaml", *workflow.overwrite_configfiles])


configfile: "config.yaml"


# the report's landing page: what the study is and where to look
report: "report/workflow.rst"


validate_config(config)
check_config(config, configfiles=workflow.configfiles)
# IEMOCAP leave-one-session-out: one corpus per fold, pooled in the analysis (cuealign/workflow/folds.py)
FOLDS = expand_folds(config)


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/features.smk"
include: "rules/tokens.smk"
include: "rules/prompts.smk"
include: "rules/finetune.smk"
include: "rules/inference.smk"
include: "rules/analysis.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
