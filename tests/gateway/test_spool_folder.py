"""The spool's folder is never created by the gateway: it is made at install, on the storage the
spool is kept on. Before, a missing folder was created, so an SD card that had not mounted left its
readings stranded on it, and the gateway started a new, empty spool on the root filesystem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.spool import Spool, SpoolUnusable
from tests.gateway.helpers import config_text
from tests.services import free_port

AQUAMI = str(Path(sys.executable).with_name("aquami"))
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "gateway" / "examples").glob("*.toml"))


def test_a_spool_whose_folder_is_missing_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    card = tmp_path / "card"  # the mount point, there with or without the card
    card.mkdir()
    path = card / "aquami" / "gw-1.sqlite"  # the spool's folder, on the card
    with pytest.raises(SpoolUnusable) as refused:
        Spool(path)
    assert str(refused.value) == (
        f"cannot open the spool {path}: its folder {card / 'aquami'} does not exist (is its storage mounted?)"
    )
    assert list(card.iterdir()) == []
    (card / "aquami").mkdir()  # the card mounted: its folder is there, and a spool file is created in it
    spool = Spool(path)
    spool.append([{"meter_id": "WM-1"}])
    spool.close()
    assert Spool(path).depth() == 1


def test_gateway_run_on_a_missing_spool_folder_exits_naming_it(tmp_path: Path) -> None:
    spool = tmp_path / "card" / "aquami" / "gw.sqlite"
    config = tmp_path / "gw.toml"
    config.write_text(config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1]}, str(spool)))
    done = subprocess.run([AQUAMI, "gateway", "run", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: cannot open the spool {spool}: its folder {spool.parent} does not exist (is its storage mounted?)"
    ]
    assert not (tmp_path / "card").exists()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_spool_folder_is_there_at_a_first_run(example: Path, tmp_path: Path) -> None:
    """A new user's first run: the example copied anywhere has its spool beside it, or the image
    makes its folder (the Dockerfile) and the compose file mounts the spool's volume there."""
    copy = tmp_path / "new-user" / example.name
    copy.parent.mkdir()
    shutil.copy(example, copy)
    spool_path = load_config(copy).spool_path
    folder = spool_path.parent
    if folder == copy.parent:  # beside the configuration (relative to it): the spool opens
        Spool(spool_path).close()
        return
    made = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if "install -d" in line]
    assert any(line.split()[-1] == str(folder) for line in made), (folder, made)
    assert f":{folder}\n" in (ROOT / "docker-compose.yml").read_text()


def test_gateway_check_warns_of_a_missing_spool_folder_and_strict_makes_it_an_error(tmp_path: Path) -> None:
    """A file may be checked on another machine than the one it runs on: the missing folder is a
    warning, exit 0; ``--strict`` makes it what ``gateway run`` makes it, exit 1. Before, check said
    "ok" without a word, and run then refused to start. Nothing is created either way."""
    spool = tmp_path / "card" / "aquami" / "gw.sqlite"
    config = tmp_path / "gw.toml"
    config.write_text(config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1]}, str(spool)))
    said = (
        f"the spool {spool}: its folder {spool.parent} does not exist (is its storage mounted?); "
        "`aquami gateway run` refuses to start without it"
    )

    def check(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AQUAMI, "gateway", "check", str(config), *options], capture_output=True, text=True, timeout=60
        )

    warned = check()
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.splitlines() == [f"warning: {said}"]
    assert warned.stdout.splitlines() == [f"{config}: ok (1 bus, 1 meter)"]
    refused = check("--strict")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [f"error: {said}"] and refused.stdout == ""
    assert not (tmp_path / "card").exists()
    spool.parent.mkdir(parents=True)  # the card mounted: nothing to say, strict or not
    for options in ((), ("--strict",)):
        done = check(*options)
        assert (done.returncode, done.stderr) == (0, ""), options
        assert done.stdout.splitlines() == [f"{config}: ok (1 bus, 1 meter)"]
    assert list(spool.parent.iterdir()) == []
