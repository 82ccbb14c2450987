"""`metasig serve` refuses to start without a registry, and says why."""

import json

import pytest

from metasig.cli import main


def test_missing_registry_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--registry", str(tmp_path / "nowhere")])
    assert "registry folder" in str(exc.value.code) and "not found" in str(exc.value.code)


def test_registry_without_index(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--registry", str(tmp_path)])
    assert "index.json not found" in str(exc.value.code)


@pytest.mark.parametrize("option", ["--max-models=0", "--max-memory-mb=-1", "--max-body-mb=abc", "--max-connections=0"])
def test_bad_limits_are_refused(tmp_path, capsys, option):
    (tmp_path / "index.json").write_text(json.dumps({"models": [], "latest": {}}))
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--registry", str(tmp_path), option])
    assert exc.value.code == 2 and option.split("=")[0] in capsys.readouterr().err
