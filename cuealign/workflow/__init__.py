"""What the Snakefile needs when it parses: the config loaded and checked against its schema, the
checks that refuse bad settings before any job runs, folds, and the jobs' resources.

Nothing here imports torch: every cluster job parses the Snakefile again."""
