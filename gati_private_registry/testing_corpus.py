"""A deterministic corpus of generated Gati modules, for the search quality tests and the
search benchmark: names from word lists, categories from the gati-contract plugin's
types, keywords, descriptions, README text, dependencies between modules."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("database", "auth", "queue", "cache", "ai", "storage", "http", "observability",
              "messaging", "payments", "search", "other")
SCOPES = ("@gati-modules", "@acme", "@platform", "")
WORDS = {
    "database": ["postgres", "mysql", "sqlite", "mongo", "cassandra", "migrate", "orm", "pool"],
    "auth": ["oauth", "saml", "ldap", "jwt", "session", "password", "passkey", "login"],
    "queue": ["kafka", "rabbit", "sqs", "worker", "scheduler", "cron", "jobs", "stream"],
    "cache": ["redis", "memcached", "lru", "memo", "warmup", "ttl", "eviction", "tiered"],
    "ai": ["embedding", "vector", "llm", "classifier", "tokenizer", "inference", "prompt", "rerank"],
    "storage": ["s3", "blob", "bucket", "upload", "archive", "snapshot", "volume", "mirror"],
    "http": ["router", "server", "client", "proxy", "cors", "compression", "websocket", "graphql"],
    "observability": ["metrics", "tracing", "logging", "prometheus", "opentelemetry", "health", "profiler", "alerts"],
    "messaging": ["email", "sms", "push", "slack", "webhook", "notifier", "templates", "digest"],
    "payments": ["stripe", "invoice", "billing", "refund", "ledger", "checkout", "currency", "tax"],
    "search": ["indexer", "fulltext", "facets", "suggest", "ranking", "synonyms", "stemmer", "crawler"],
    "other": ["utils", "config", "dates", "colors", "validator", "uuid", "slugify", "retry"],
}
ADJECTIVES = ["fast", "tiny", "smart", "robust", "async", "simple", "secure", "durable",
              "elastic", "lazy", "strict", "modern", "typed", "reactive", "portable"]
FILLER = ("a module for gati applications that works with the framework contracts and ships "
          "typed interfaces tests and examples for production use").split()


@dataclass
class CorpusModule:
    name: str
    category: str
    description: str
    keywords: list[str]
    readme: str
    dependencies: dict[str, str] = field(default_factory=dict)
    contracts: list[str] = field(default_factory=list)

    def spec_kwargs(self) -> dict[str, Any]:
        """Arguments for :class:`gati_private_registry.testing.ModuleSpec`."""
        bare = self.name.rpartition("/")[2]
        return {"name": self.name, "version": "1.0.0", "description": self.description,
                "keywords": self.keywords, "dependencies": self.dependencies,
                "files": {"README.md": self.readme},
                "gati_module": {"name": self.name, "version": "1.0.0", "type": self.category,
                                "contracts": self.contracts},
                "extra": {"author": f"{bare} authors"}}


def generate(count: int, seed: int = 9) -> list[CorpusModule]:
    """``count`` modules with unique names; the same ``seed`` gives the same corpus."""
    rng = random.Random(seed)
    out: list[CorpusModule] = []
    seen: set[str] = set()
    while len(out) < count:
        category = CATEGORIES[len(out) % len(CATEGORIES)]
        words = WORDS[category]
        first, second = rng.choice(words), rng.choice(words + ADJECTIVES)
        scope = rng.choice(SCOPES)
        bare = f"{first}-{second}" if first != second else first
        if bare in seen or (scope and f"{scope}/{bare}" in seen):
            bare = f"{bare}-{rng.choice(ADJECTIVES)}{len(out)}"
        name = f"{scope}/{bare}" if scope else bare
        if name in seen:
            continue
        seen.add(name)
        seen.add(bare)
        keywords = sorted({category, first, rng.choice(words), rng.choice(ADJECTIVES)})
        description = (f"{rng.choice(ADJECTIVES).capitalize()} {first} {second} "
                       f"{category} module: " + " ".join(rng.sample(FILLER, 8)))
        readme = (f"# {name}\n\n{description}\n\n## Usage\n\n```js\nconst m = require("
                  f"'{name}');\n```\n\n" + " ".join(rng.choice(FILLER) for _ in range(60)))
        deps = {}
        if out and rng.random() < 0.5:
            for dep in rng.sample(out[-50:], min(len(out[-50:]), rng.randint(1, 3))):
                deps[dep.name] = "^1.0.0"
        contracts = [f"gati.{category}/v{rng.randint(1, 2)}"]
        out.append(CorpusModule(name=name, category=category, description=description,
                                keywords=keywords, readme=readme, dependencies=deps,
                                contracts=contracts))
    return out
