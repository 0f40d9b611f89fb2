"""A SLURM run that names no partition or no account is refused when the workflow is parsed, so
that `snakemake --workflow-profile profiles/slurm -n` says what is missing instead of a real run
failing later in the executor plugin (docs/cluster.md).

Snakemake tells a Snakefile neither the executor nor the profile it runs under, so both are read
from the command line (``--executor``/``-e``, ``--profile``, ``--workflow-profile``, and the
``SNAKEMAKE_PROFILE`` variable) and from the profiles' config.yaml; the resources are Snakemake's
own, merged from the profiles and the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

REQUIRED = ("slurm_partition", "slurm_account")
SITE_DEFAULTS = "CUEALIGN_SLURM_SITE_DEFAULTS"  # =1: the site's default partition and account are meant


class ClusterError(ValueError):
    """A cluster run that would fail at submission."""


def _option(argv: Sequence[str], *names: str) -> list[str]:
    """Every value given to one of ``names`` (``--name value`` or ``--name=value``), in order."""
    values = []
    for k, token in enumerate(argv):
        for name in names:
            if token == name and k + 1 < len(argv):
                values.append(argv[k + 1])
            elif token.startswith(name + "="):
                values.append(token.split("=", 1)[1])
    return values


def _profile_config(name: str, cwd: Path) -> dict:
    """A profile's config.yaml, found where Snakemake looks for it ({} when there is none)."""
    candidates = [cwd / name, Path(name).expanduser()]
    if os.sep not in name:
        candidates += [Path.home() / ".config/snakemake" / name, Path("/etc/xdg/snakemake") / name]
    for folder in candidates:
        if (file := folder / "config.yaml").is_file():
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def executor(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> str | None:
    """The executor a Snakemake command line runs under: its own option, else the workflow
    profile's, else the profile's."""
    if given := _option(argv, "--executor", "-e"):
        return given[-1]
    profiles = _option(argv, "--profile") or (
        [environ["SNAKEMAKE_PROFILE"]] if environ.get("SNAKEMAKE_PROFILE") else []
    )
    for name in [*_option(argv, "--workflow-profile"), *reversed(profiles)]:
        if found := _profile_config(name, cwd).get("executor"):
            return str(found)
    return None


def check_slurm_resources(
    argv: Sequence[str],
    default_resources: Mapping | None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Raise ClusterError when the SLURM executor runs without slurm_partition or slurm_account in
    the default resources (profile or --default-resources), with the command-line fix."""
    environ = os.environ if environ is None else environ
    if environ.get(SITE_DEFAULTS) == "1" or executor(argv, environ, cwd or Path.cwd()) != "slurm":
        return
    given = set(default_resources.keys()) if default_resources is not None else set()
    if missing := [key for key in REQUIRED if key not in given]:
        raise ClusterError(
            f"a SLURM run without {' or '.join(missing)}: the jobs would be refused at submission, or sent to an "
            "account or partition you did not choose. Add them to the command line (default-resources given there "
            "replace the profile's, so repeat runtime and mem_mb):\n"
            "  snakemake --workflow-profile profiles/slurm --default-resources slurm_partition=<partition> "
            "slurm_account=<account> runtime=60 mem_mb=2000\n"
            f"(or to a profile of your site's; docs/cluster.md). If your site's default partition and account are "
            f"what you want: {SITE_DEFAULTS}=1 snakemake ..."
        )
