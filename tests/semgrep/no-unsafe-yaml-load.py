# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-unsafe-yaml-load.
import yaml


def settings(text):
    # ruleid: no-unsafe-yaml-load
    a = yaml.load(text)
    # ruleid: no-unsafe-yaml-load
    b = yaml.load(text, Loader=yaml.Loader)
    # ruleid: no-unsafe-yaml-load
    c = yaml.unsafe_load(text)
    # ruleid: no-unsafe-yaml-load
    d = yaml.full_load(text)
    # ok: no-unsafe-yaml-load
    e = yaml.load(text, Loader=yaml.SafeLoader)
    # ok: no-unsafe-yaml-load
    f = yaml.safe_load(text)
    return a, b, c, d, e, f
