"""Validation of what a publisher sends: package names, versions, dist-tags, the tarball
and the agreement between the manifest in the publish body and the tarball's package.json.

Everything here is pure (no database, no disk, no network) and thread-safe, so the web
layer can call it from any worker. Problems are reported as :class:`FieldError` lists or
raised as :class:`ValidationFailed` (every problem at once) / :class:`TooLarge`.

The npm behaviour reproduced here was read from npm's own sources (validate-npm-package-name
8.x, @npmcli/package-json 7.x ``lib/normalize.js`` and ``normalize-data.js``, hosted-git-info,
libnpmpublish) and checked against the PUT bodies real npm 11.19 sends; those bodies are the
fixtures in ``tests/unit/services/fixtures/publish_bodies``.
"""
from .manifests import check_gati_module, check_manifest_agreement, normalize_manifest
from .names import (VersionKey, highest_version, is_valid_tag, parse_version,
                    validate_package_name, version_sort_key)
from .tarballs import TarballFile, TarballInfo, inspect_tarball

__all__ = [
    "TarballFile",
    "TarballInfo",
    "VersionKey",
    "check_gati_module",
    "check_manifest_agreement",
    "highest_version",
    "inspect_tarball",
    "is_valid_tag",
    "normalize_manifest",
    "parse_version",
    "validate_package_name",
    "version_sort_key",
]
