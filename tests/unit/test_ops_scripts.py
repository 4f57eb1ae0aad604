"""The operations scripts: the daemon installer's dry run, and the cron and systemd examples."""

import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_installer_dry_run_prints_the_unit_and_changes_nothing(tmp_path):
    done = subprocess.run(["bash", str(SCRIPTS / "install-daemon.sh"), "--dry-run", "--config", "/etc/g/x.toml",
                           "--user", "backup"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "# would write /etc/systemd/system/genarc-daemon.service:" in done.stdout
    assert "--config /etc/g/x.toml daemon" in done.stdout and "User=backup" in done.stdout
    assert "KillSignal=SIGTERM" in done.stdout and "systemctl enable --now" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_examples_call_genarc_run_as_documented():
    cron = (SCRIPTS / "genarc.cron").read_text()
    assert "genarc --config /etc/genarc/genarc.toml run --quiet --metrics-file" in cron
    service = (SCRIPTS / "systemd" / "genarc.service").read_text()
    timer = (SCRIPTS / "systemd" / "genarc.timer").read_text()
    assert "Type=oneshot" in service and "SuccessExitStatus=1" in service and "OnCalendar=" in timer
