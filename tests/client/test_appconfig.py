"""The app's gati.config modules section follows install and remove."""
from __future__ import annotations

import json
from pathlib import Path

from gati_private_registry.client.appconfig import ModuleInfo, sync

PG = ModuleInfo("@gati-modules/postgres", "^2.1.0", {"host": "localhost", "pool": {"max": 10}})
REDIS = ModuleInfo("@gati-modules/redis", "^1.0.0", None)


def test_json_is_created_filled_and_emptied(tmp_path: Path) -> None:
    assert sync(tmp_path, [], ["x"]) == (None, None)
    path, warning = sync(tmp_path, [PG, REDIS], [])
    assert path == tmp_path / "gati.config.json" and warning is None
    doc = json.loads(path.read_text())
    assert doc["modules"]["@gati-modules/redis"] == {"version": "^1.0.0"}
    pg = doc["modules"]["@gati-modules/postgres"]
    assert pg["config"]["host"] == "localhost" and pg["config"]["pool"] == {"max": 10}
    assert "gati-module.json" in pg["config"]["//"]
    # the app's own edits survive a reinstall, the version follows
    pg["config"]["host"] = "db.internal"
    doc["other"] = True
    path.write_text(json.dumps(doc))
    sync(tmp_path, [ModuleInfo(PG.name, "^2.2.0", PG.default_config)], [])
    doc = json.loads(path.read_text())
    assert doc["modules"][PG.name]["config"]["host"] == "db.internal"
    assert doc["modules"][PG.name]["version"] == "^2.2.0" and doc["other"] is True
    sync(tmp_path, [], [PG.name])
    assert list(json.loads(path.read_text())["modules"]) == ["@gati-modules/redis"]


TS = """import { defineConfig } from '@gati/core';

// the app's configuration: "modules: {" inside a comment is not the section
export default defineConfig({
  name: 'shop',
  modules: {
    '@gati-modules/redis': { version: '^1.0.0', url: "redis://x/{0}" },
  },
  port: 3000,
});
"""


def test_ts_object_literal_gets_entries_with_a_comment_and_loses_them(tmp_path: Path) -> None:
    path = tmp_path / "gati.config.ts"
    path.write_text(TS)
    changed, warning = sync(tmp_path, [PG], [])
    assert changed == path and warning is None
    text = path.read_text()
    assert "// default configuration from @gati-modules/postgres's gati-module.json" in text
    assert '"@gati-modules/postgres": {' in text and '"host": "localhost"' in text
    assert text.index("@gati-modules/redis") < text.index("@gati-modules/postgres") \
        < text.index("port: 3000")
    node_check = text.replace("import { defineConfig } from '@gati/core';", "") \
        .replace("export default defineConfig(", "module.exports = (")
    (tmp_path / "check.js").write_text(node_check)
    import subprocess
    out = subprocess.run(["node", "-e", "const c = require('./check.js');"
                          "console.log(JSON.stringify(Object.keys(c.modules)))"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["@gati-modules/redis", "@gati-modules/postgres"]
    sync(tmp_path, [], ["@gati-modules/redis", "@gati-modules/postgres"])
    text = path.read_text()
    assert "@gati-modules" not in text.split("modules: {")[1].split("port")[0]
    assert "port: 3000" in text and "name: 'shop'" in text


def test_ts_without_a_literal_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "gati.config.ts"
    path.write_text("import mods from './mods';\nexport default { modules: mods };\n")
    changed, warning = sync(tmp_path, [PG], [])
    assert changed is None and "by hand" in (warning or "")
    assert path.read_text().endswith("{ modules: mods };\n")
