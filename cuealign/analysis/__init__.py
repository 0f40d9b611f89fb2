"""The analysis stage: answers scored per condition, statistics (UAR, clustered intervals, exact
McNemar tests with Holm, Spearman over the corruption curve), cue following, accounting, prompt
variants, the model card, tables, figures and provenance."""
