"""A registry driver with domain verbs over the Flask test client."""
from __future__ import annotations

import base64
import json
from typing import Any

from gati_private_registry.services import Services
from gati_private_registry.testing import ModuleSpec, publish_body

ABBREV = "application/vnd.npm.install-v1+json"


class Registry:
    def __init__(self, client: Any, services: Services) -> None:
        self.client = client
        self.services = services
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, user: str = "admin", scope: str = "publish") -> str:
        key = (user, scope)
        if key not in self._tokens:
            self._tokens[key] = self.services.tokens.create_token(None, user, scope).secret
        return self._tokens[key]

    def add_user(self, name: str, role: str = "publisher", password: str = "password-123") -> None:
        self.services.accounts.create_user(None, name, password, role)

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def publish(self, spec: ModuleSpec | dict[str, Any], token: str | None = None,
                name: str | None = None, **kw: Any) -> Any:
        body = spec if isinstance(spec, dict) else publish_body(spec, **kw)
        url_name = name or body["name"]
        return self.client.put(f"/npm/{url_name.replace('/', '%2f')}", json=body,
                               headers=self.headers(token or self.token()))

    def packument(self, name: str, token: str | None = None, abbreviated: bool = False,
                  **headers: str) -> Any:
        h = self.headers(token or self.token("admin", "read"))
        if abbreviated:
            h["Accept"] = ABBREV
        h.update(headers)
        return self.client.get(f"/npm/{name}", headers=h)

    def doc(self, name: str) -> dict[str, Any]:
        resp = self.packument(name)
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data)

    def tarball(self, name: str, version: str, token: str | None = None) -> Any:
        bare = name.split("/")[-1]
        return self.client.get(f"/npm/{name}/-/{bare}-{version}.tgz",
                               headers=self.headers(token or self.token("admin", "read")))


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()
