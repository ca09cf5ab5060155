# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-shell-commands.
import os
import subprocess


def backup(path):
    # ruleid: no-shell-commands
    subprocess.run(f"pg_dump > {path}", shell=True, check=True)
    # ruleid: no-shell-commands
    subprocess.check_output("ls " + path, shell=True)
    # ruleid: no-shell-commands
    os.system("rm -rf " + path)
    # ruleid: no-shell-commands
    os.popen("cat " + path)
    # ok: no-shell-commands
    subprocess.run(["pg_dump", "--file", path], check=True)
    # ok: no-shell-commands
    os.path.join(path, "x")
