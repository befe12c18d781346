"""One command's view of the world: environment, output, registry, token, pinned keys."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ClientConfig, Environment
from ..errors import ClientError
from ..http import Http
from ..output import Output
from ..trust import Trust, server_keys


@dataclass
class Session:
    env: Environment
    config: ClientConfig
    out: Output
    registry_flag: str | None
    _http: Http | None = field(default=None, repr=False)

    @classmethod
    def create(cls, registry: str | None, json_mode: bool) -> "Session":
        env = Environment.from_os()
        return cls(env=env, config=ClientConfig(env),
                   out=Output(json_mode=json_mode, color=False if env.no_color else None),
                   registry_flag=registry)

    @property
    def root(self) -> str:
        return self.config.registry(self.registry_flag)[0]

    @property
    def http(self) -> Http:
        if self._http is None:
            root = self.root
            self._http = Http(root, self.config.token(root))
        return self._http

    def trust(self) -> Trust:
        return Trust.from_store(self.config.pinned_keys(self.root))

    def save_trust(self, trust: Trust) -> None:
        self.config.store_pinned_keys(self.root, trust.to_store())

    def refreshed_trust(self) -> Trust:
        """The pinned keys with the server's revocations and expiries applied; offline
        (registry unreachable) the pinned state as stored, with a warning. Raises
        :class:`~..errors.VerificationFailed` when a pinned key id changed its key."""
        trust = self.trust()
        try:
            doc = self.http.get_json(self.http.api("keys"), "reading the organisation keys")
        except ClientError as exc:
            if exc.code in ("network",):
                self.out.warn(f"{exc.message}; checking signatures with the keys pinned "
                              "at login")
                return trust
            raise
        if trust.refresh(server_keys(doc)):
            self.save_trust(trust)
        return trust
