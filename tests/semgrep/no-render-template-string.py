# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-render-template-string.
import jinja2
from flask import current_app, render_template, render_template_string


def thank_you(name):
    # ruleid: no-render-template-string
    return render_template_string("<p>Thank you, " + name + "</p>")


def receipt(body):
    # ruleid: no-render-template-string
    template = current_app.jinja_env.from_string(body)
    # ruleid: no-render-template-string
    other = jinja2.Template(body)
    return template, other


def page(name):
    # ok: no-render-template-string
    return render_template("donations/thank_you.html", name=name)
