# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-eval-or-pickle.
import json
import pickle


def load(blob, expression):
    # ruleid: no-eval-or-pickle
    value = eval(expression)
    # ruleid: no-eval-or-pickle
    state = pickle.loads(blob)
    # ok: no-eval-or-pickle
    data = json.loads(blob)
    return value, state, data
