from __future__ import annotations

import random
import string

import pytest
from gati_private_registry.hooks import Decision

from gati_registry_plugins import secrets
from helpers import candidate_from_tarball, defaults, package_tgz

# Fake credentials are assembled at runtime so this file itself trips no scanner.
_rng = random.Random(1234)


def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


_aws_id = "AK" + "IA" + rand(16, string.ascii_uppercase + string.digits)
_aws_secret = rand(40, string.ascii_letters + string.digits + "/+")
_gh = "gh" + "p_" + rand(36)
_gho = "gh" + "s_" + rand(36)
_pat = "github" + "_pat_" + rand(22) + "_" + rand(59)
_gl = "gl" + "pat-" + rand(20)
_slack = "xo" + "xb-" + rand(12, string.digits) + "-" + rand(24)
_stripe = "sk" + "_live_" + rand(24)
_google = "AI" + "za" + rand(35)
_npm = "np" + "m_" + rand(36)
_jwt = "ey" + "J" + rand(20) + ".ey" + "J" + rand(30) + "." + rand(43)
_password = rand(28)
#: kind named in the reason -> (a line of code, the secret that must never be shown)
SECRETS: dict[str, tuple[str, str]] = {
    "AWS access key id": (f'const id = "{_aws_id}";', _aws_id),
    "AWS secret access key": (f"aws_secret_access_key = {_aws_secret}", _aws_secret),
    "GitHub token": (f"token: '{_gh}'", _gh),
    "GitHub token ": (f"x={_gho}", _gho),
    "GitHub fine-grained token": (f"const t = `{_pat}`", _pat),
    "GitLab token": (f"GITLAB={_gl}", _gl),
    "Slack token": (f"hook({_slack})", _slack),
    "Stripe live key": (f"stripe({_stripe})", _stripe),
    "Google API key": (f"key={_google}", _google),
    "npm token": (f"// {_npm}", _npm),
    "JSON Web Token": (f"Authorization: Bearer {_jwt}", _jwt),
    "hard-coded secret": (f'const dbPassword = "{_password}";', _password),
}


def review(files: dict, **config: object):
    cand = candidate_from_tarball(package_tgz({}, files))
    return secrets.gati_registry_review_version(candidate=cand,
                                                config=defaults(secrets, **config))


def assert_not_leaked(reasons: tuple[str, ...], secret: str) -> None:
    text = "\n".join(reasons)
    # not the secret, nor any 8-character piece of it beyond a public prefix
    for i in range(4, len(secret) - 8):
        assert secret[i:i + 8] not in text, (secret, text)


def test_clean_package_approves() -> None:
    vote = review({"lib/a.js": "const password = process.env.PASSWORD;\n"
                               "const token = '${TOKEN_FROM_ENVIRONMENT}';\n"
                               "const apiKey = 'your-api-key-goes-here-please';\n"})
    assert vote.decision is Decision.APPROVE, vote.reasons
    assert "no secrets found in 3 text files" in vote.reasons[0]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_pattern_rejects_without_leaking(kind: str) -> None:
    line, secret = SECRETS[kind]
    vote = review({"src/config.js": "// settings\n\n" + line + "\n"})
    assert vote.decision is Decision.REJECT
    assert any(r.startswith(f"src/config.js:3: {kind.strip()}") for r in vote.reasons), vote.reasons
    assert_not_leaked(vote.reasons, secret)


@pytest.mark.parametrize("header", ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
                                    "DSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK",
                                    "ENCRYPTED PRIVATE KEY", "PRIVATE KEY"])
def test_private_keys(header: str) -> None:
    body = rand(64)
    vote = review({"keys/id.pem": f"-----BEGIN {header}-----\n{body}\n-----END {header}-----\n"})
    assert vote.decision is Decision.REJECT
    assert vote.reasons[0].startswith("keys/id.pem:1: private key")
    assert_not_leaked(vote.reasons, body)


def test_npmrc_with_auth_token() -> None:
    token = rand(36)
    vote = review({".npmrc": f"registry=https://r.example/\n//r.example/:_authToken={token}\n"})
    assert vote.decision is Decision.REJECT
    assert vote.reasons[0] == ".npmrc:2: .npmrc with a registry credential (_authToken=***)"
    assert_not_leaked(vote.reasons, token)
    assert review({".npmrc": "save-exact=true\n"}).decision is Decision.APPROVE


def test_env_file() -> None:
    value = rand(12)
    vote = review({".env": f"# local\nDB_HOST=localhost\nDB_PASS={value}\nEMPTY=\n"})
    assert vote.decision is Decision.REJECT
    assert vote.reasons[0] == ".env: a .env file with 2 values (DB_HOST, DB_PASS); values not shown"
    assert_not_leaked(vote.reasons, value)
    assert review({".env.example": "DB_PASS=changeme\n"}).decision is Decision.APPROVE


def test_aws_documentation_example_is_ignored() -> None:
    assert review({"README.md": "AKIAIOSFODNN7EXAMPLE"}).decision is Decision.APPROVE


def test_binaries_and_big_files_are_skipped() -> None:
    blob = b"\x7fELF\x00\x00" + _gh.encode()
    vote = review({"bin/tool": blob, "big.js": "x" * 2000 + _gh}, max_file_size=1000)
    assert vote.decision is Decision.APPROVE
    assert "2 binary or larger than 1.0 kB not scanned" in vote.reasons[0]


def test_ignore_paths_and_action() -> None:
    files = {"test/fixtures/key.js": f"t='{_gh}'"}
    assert review(files, ignore_paths=["test/fixtures/*"]).decision is Decision.APPROVE
    vote = review(files, action="needs-review")
    assert vote.decision is Decision.NEEDS_REVIEW
    assert_not_leaked(vote.reasons, _gh)


def test_entropy_threshold_setting() -> None:
    files = {"a.js": 'const secret = "abcd1234abcd1234abcd1234";'}  # low entropy
    assert review(files).decision is Decision.APPROVE
    assert review(files, entropy_threshold=2.0).decision is Decision.REJECT


def test_word_boundary_in_python_finds_what_a_leading_backslash_b_found() -> None:
    """The patterns start with their literal (fast) and check the word boundary after a
    match; on text full of near-misses (a word character just before a token, tokens
    run together, tokens inside tokens) they must find exactly what ``\\b`` + pattern
    found with ``finditer``."""
    import re

    tokens = [_aws_id, "aws_secret_access_key = '" + _aws_secret + "'", _gh, _gho, _pat, _gl,
              _slack, _stripe, _google, _npm, _jwt]
    glue = ["", " ", "x", "_", "-", ".", "(", "\n", "é", "9", "a" + "ws_", "gh", "eyJ"]
    fuzz = random.Random(77)
    for _ in range(300):
        text = "".join(fuzz.choice(glue) + fuzz.choice(tokens)[: fuzz.randint(8, 200)]
                       for _ in range(fuzz.randint(1, 8)))
        for pattern in secrets._PATTERNS:
            flags = pattern.regex.flags & re.IGNORECASE
            reference = re.compile((r"\b" if pattern.boundary else "") + pattern.regex.pattern.removeprefix("(?i)"),
                                   flags)
            want = [(m.start(), m.group(0)) for m in reference.finditer(text)]
            got = [(m.start(), m.group(0)) for m in secrets._matches(pattern, text)]
            assert got == want, (pattern.kind, text)
    # and the boundary is really checked: glued to a word, a token is not a token
    assert list(secrets.scan_text("a.js", "x" + _gh)) == []
    assert len(list(secrets.scan_text("a.js", "(" + _gh + ")"))) == 1
