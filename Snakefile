import copy
import os
import sys

from snakemake.utils import min_version

from cuealign.workflow.checks import check_config
from cuealign.workflow.cluster import check_slurm_resources
from cuealign.workflow.config import (
    change_summary,
    refuse_templates,
    remember_config,
    validate_config,
)
from cuealign.workflow.folds import expand_folds
from cuealign.models.numerics import numpy_baseline_environment

min_version("9.0")
# before config.yaml is loaded: a templated config (__use_yte__) would run code as it loads
refuse_templates(["config.yaml", *workflow.overwrite_configfiles])


configfile: "config.yaml"


# the report's landing page: what the study is, its headline numbers (rule landing_page) and where
# to look; the text alone before a run has made the numbers
LANDING = "results/report_landing.rst"
LANDING_TEXT = (
    os.path.abspath(LANDING)
    if os.path.exists(LANDING) or "--report-after-run" in sys.argv
    else "report/workflow.rst"
)


report: LANDING_TEXT


validate_config(config)
# Every job's NumPy computes with its baseline code, the same on every x86-64 CPU: its SIMD paths
# differ in last bits between AVX2 and AVX-512 (set before any job starts; read by NumPy at import)
os.environ.update(numpy_baseline_environment())
# a SLURM run without partition or account fails in the plugin, after planning: refused here
check_slurm_resources(sys.argv, workflow.resource_settings.default_resources)
check_config(config, configfiles=workflow.configfiles)
# one line on what changed since the last completed run (not in the jobs a cluster starts)
if "--target-jobs" not in sys.argv and (summary := change_summary(config)):
    print(summary, file=sys.stderr)
# the config as written (expand_folds adds the folds' corpora below)
STUDIED = copy.deepcopy(config)


onsuccess:
    remember_config(STUDIED)


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
