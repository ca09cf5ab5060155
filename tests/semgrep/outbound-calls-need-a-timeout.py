# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: outbound-calls-need-a-timeout.
import smtplib
import urllib.request

import requests
import stripe


def fetch(url, config):
    # ruleid: outbound-calls-need-a-timeout
    urllib.request.urlopen(url)
    # ok: outbound-calls-need-a-timeout
    urllib.request.urlopen(url, timeout=config["FEED_TIMEOUT_SECONDS"])
    # ok: outbound-calls-need-a-timeout
    urllib.request.urlopen(url, None, 10)
    # ruleid: outbound-calls-need-a-timeout
    requests.get(url)
    # ok: outbound-calls-need-a-timeout
    requests.post(url, json={}, timeout=5)
    # ruleid: outbound-calls-need-a-timeout
    smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"])
    # ok: outbound-calls-need-a-timeout
    smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=10)
    # ruleid: outbound-calls-need-a-timeout
    stripe.new_default_http_client()
    # ok: outbound-calls-need-a-timeout
    stripe.new_default_http_client(timeout=2)
    # ok: outbound-calls-need-a-timeout
    requests.Session()
