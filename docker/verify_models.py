"""Check the default model weights shipped inside the package against their model cards.

Run at image build time (``Dockerfile``) on the *installed* package, so a weight file that did
not travel inside the wheel, or one that changed on the way (a Git LFS pointer instead of the
file, a truncated download), stops the build instead of failing a user's run.

A model card is a JSON file under ``bids_enhance/data/models/`` with ``checkpoint: {file,
sha256}`` (as ``bids_enhance.training.card`` writes it) or ``weights: [{file, sha256}, ...]``;
``file`` is relative to the card. Every weight file (``*.pt``, ``*.pth``, ``*.ckpt``,
``*.safetensors``) must be named by a card. No weights at all is fine (the release has none yet).

    python verify_models.py [MODELS_DIR]      # default: the installed bids_enhance's data/models
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fobj:
        for block in iter(lambda: fobj.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(card: dict) -> list[dict]:
    entries = []
    if isinstance(card.get("checkpoint"), dict):
        entries.append(card["checkpoint"])
    if isinstance(card.get("weights"), list):
        entries.extend(w for w in card["weights"] if isinstance(w, dict))
    return entries


def verify(models_dir: Path) -> list[str]:
    """Problems found (empty when every weight file matches its card)."""
    problems: list[str] = []
    if not models_dir.is_dir():
        return problems
    checked: set[Path] = set()
    for card_path in sorted(models_dir.rglob("*.json")):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{card_path}: not readable JSON ({exc})")
            continue
        if not isinstance(card, dict):
            continue
        for entry in _entries(card):
            name, expected = entry.get("file"), entry.get("sha256")
            if not name or not expected:
                problems.append(f"{card_path}: a weight entry lacks 'file' or 'sha256'")
                continue
            weight = (card_path.parent / name).resolve()
            if not weight.is_file():
                problems.append(f"{card_path}: {name} is missing")
                continue
            actual = _sha256(weight)
            if actual != expected:
                problems.append(f"{weight}: sha256 {actual} does not match the card's {expected}")
            checked.add(weight)
            print(f"ok {card_path.parent / name} sha256 {actual[:12]}…")
    for weight in sorted(models_dir.rglob("*")):
        if weight.suffix in WEIGHT_SUFFIXES and weight.resolve() not in checked:
            problems.append(f"{weight}: no model card names this weight file (with its sha256)")
    return problems


def installed_models_dir() -> Path:
    import bids_enhance

    return Path(bids_enhance.__file__).resolve().parent / "data" / "models"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    models_dir = Path(argv[0]) if argv else installed_models_dir()
    weights = [p for p in models_dir.rglob("*") if p.suffix in WEIGHT_SUFFIXES] \
        if models_dir.is_dir() else []
    if not weights and not (models_dir.is_dir() and any(models_dir.rglob("*.json"))):
        print(f"No default model weights in {models_dir}: nothing to verify.")
        return 0
    problems = verify(models_dir)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"All default model weights in {models_dir} match their model cards.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
