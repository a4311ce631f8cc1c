"""The fake tokens the secrets tests plant, and the scan for them: what ``test_secrets`` and ``test_browser`` share."""

from pathlib import Path

ENV_SECRET = "hf_FAKEenvSecret0123456789abcdefXYZ"
"""Planted as ``HF_TOKEN`` in the environment."""
ARG_SECRET = "hf_FAKEargSecret9876543210fedcbaXYZ"
"""Passed as ``--token`` on the command line."""
SECRETS = {"HF_TOKEN": ENV_SECRET, "--token": ARG_SECRET}


def leaks(folder: Path, printed: str) -> list[str]:
    """Where either secret appears: in ``printed`` output and in every file under ``folder``."""
    found = [f"printed output holds {name}" for name, secret in SECRETS.items() if secret in printed]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path} holds {name}" for name, secret in SECRETS.items() if secret.encode() in data]
    return found
