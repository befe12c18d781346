// Verifies every package installed in a project the way `npm audit signatures` does it
// per package (npm's lib/utils/verify-signatures.js): the registry's keys from
// /-/npm/v1/keys as PEM, then pacote.manifest() with verifySignatures. Only the Sigstore
// TUF lookup that npm tries first (unreachable in a closed network) is left out.
//
//   node verify-signatures.cjs PACOTE_DIR PROJECT_DIR REGISTRY_URL TOKEN CACHE_DIR [wrong-keys]
//
// Prints a JSON array: one {name, version, ok, signatures | code, message} per package.
'use strict'
const fs = require('fs')
const path = require('path')
const crypto = require('crypto')

const [pacoteDir, projectDir, registry, token, cacheDir, mode] = process.argv.slice(2)
const pacote = require(pacoteDir)

async function main () {
  const url = new URL(registry)
  const regKey = `//${url.host}${url.pathname}`
  const res = await fetch(new URL('-/npm/v1/keys', registry), {
    headers: { authorization: `Bearer ${token}` },
  })
  if (!res.ok) {
    throw new Error(`GET /-/npm/v1/keys: ${res.status}`)
  }
  let keys = (await res.json()).keys.map((key) => ({
    ...key,
    pemkey: `-----BEGIN PUBLIC KEY-----\n${key.key}\n-----END PUBLIC KEY-----`,
  }))
  if (mode === 'wrong-keys') {
    // the same key ids with other P-256 keys: every signature must now fail
    keys = keys.map((key) => ({
      ...key,
      pemkey: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
        .publicKey.export({ type: 'spki', format: 'pem' }),
    }))
  }
  const lock = JSON.parse(fs.readFileSync(path.join(projectDir, 'node_modules', '.package-lock.json')))
  const results = []
  for (const [location, meta] of Object.entries(lock.packages)) {
    if (!location || meta.link) {
      continue
    }
    const name = meta.name || location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length)
    try {
      const manifest = await pacote.manifest(`${name}@${meta.version}`, {
        registry,
        cache: cacheDir,
        fullMetadata: true,
        verifySignatures: true,
        [`${regKey}:_keys`]: keys,
        [`${regKey}:_authToken`]: token,
      })
      results.push({
        name,
        version: meta.version,
        ok: true,
        signatures: (manifest._signatures || []).length,
        integrity: manifest._integrity,
        installedIntegrity: meta.integrity,
      })
    } catch (err) {
      results.push({ name, version: meta.version, ok: false, code: err.code, message: err.message })
    }
  }
  process.stdout.write(JSON.stringify(results))
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`)
  process.exit(2)
})
