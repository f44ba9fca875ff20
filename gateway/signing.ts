/**
 * Registry signatures, as npm verifies them (`npm audit signatures`): every version published here
 * is signed with ECDSA P-256 over `<name>@<version>:<integrity>` (`dist.signatures`), and
 * `GET /-/npm/v1/keys` lists the public keys: this registry's, and each upstream's (fetched and kept,
 * so they are served offline) so that mirrored versions, which keep the upstream's signatures, verify
 * through the mirror too.
 *
 * Each gateway's private key is a file of its data directory (`DATA_DIR/signing-key.pem`, mode 0600,
 * made at the first start); its public key is a `signing-key:<keyid>` document of `<db>-state`, so
 * every gateway serves every gateway's keys. To rotate, an admin sets `expires` on the key's document
 * (in Fauxton): at its next start the gateway moves the old file aside and makes a new key, and the
 * old key stays listed with its expiry, which keeps what it signed before then verifiable.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, sign } from 'crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'fs';
import { join } from 'path';
import { Logger } from 'pino';
import { Couch, Database } from '../couchdb/client';
import { UpstreamRegistry } from '../replication/upstream';

/** A public key as `/-/npm/v1/keys` lists it. */
export interface RegistryKey {
  expires: string | null;
  keyid: string;
  keytype: string;
  scheme: string;
  /** The SPKI DER of the key, base64. */
  key: string;
}

interface KeyDoc extends RegistryKey {
  _id: string;
  _rev?: string;
  type: 'signing-key';
  created: string;
}

interface UpstreamKeysDoc {
  _id: string;
  _rev?: string;
  type: 'upstream-keys';
  upstream: string;
  keys: RegistryKey[];
  fetched: string;
}

const KEY_FILE = 'signing-key.pem';
const UPSTREAM_KEYS_ID = 'upstream-keys';

function publicKeyOf(privateKey: KeyObject): { keyid: string; key: string } {
  const der = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return { keyid: 'SHA256:' + createHash('sha256').update(der).digest('base64').replace(/=+$/, ''), key: der.toString('base64') };
}

export class KeyRing {
  private privateKey!: KeyObject;
  /** This gateway's key id. */
  keyid = '';
  private readonly db: Database<KeyDoc | UpstreamKeysDoc>;
  private listed: { keys: RegistryKey[]; own: Set<string>; at: number } | null = null;

  constructor(
    couch: Couch,
    stateDb: string,
    private readonly dataDir: string,
    /** Every upstream: the keys of each are listed (one without a keys endpoint, such as GitHub Packages, adds none). */
    private readonly upstreams: UpstreamRegistry[],
    private readonly log: Logger,
  ) {
    this.db = couch.db(stateDb);
  }

  /** Loads this gateway's key (making one, or a new one when an admin expired it) and lists it. */
  async open(): Promise<void> {
    const file = join(this.dataDir, KEY_FILE);
    if (existsSync(file)) {
      this.privateKey = createPrivateKey(readFileSync(file, 'utf8'));
      const { keyid } = publicKeyOf(this.privateKey);
      const doc = (await this.db.get('signing-key:' + keyid)) as KeyDoc | null;
      if (doc && doc.expires && Date.parse(doc.expires) <= Date.now()) {
        renameSync(file, join(this.dataDir, 'signing-key.expired-' + keyid.slice(7, 19).replace(/[^A-Za-z0-9]/g, '_') + '.pem'));
        this.log.info({ keyid }, 'signing key expired by an admin: making a new one');
      }
    }
    if (!existsSync(file)) {
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    }
    this.privateKey = createPrivateKey(readFileSync(file, 'utf8'));
    const { keyid, key } = publicKeyOf(this.privateKey);
    this.keyid = keyid;
    if (!(await this.db.get('signing-key:' + keyid))) {
      await this.db
        .put({ _id: 'signing-key:' + keyid, type: 'signing-key', keyid, key, keytype: 'ecdsa-sha2-nistp256', scheme: 'ecdsa-sha2-nistp256', expires: null, created: new Date().toISOString() })
        .catch((err) => {
          if ((err as { statusCode?: number }).statusCode !== 409) throw err;
        });
    }
  }

  /** The signatures of a version published here (`dist.signatures`). */
  sign(name: string, version: string, integrity: string): { keyid: string; sig: string }[] {
    const sig = sign('sha256', Buffer.from(name + '@' + version + ':' + integrity), this.privateKey).toString('base64');
    return [{ keyid: this.keyid, sig }];
  }

  /** Fetches every upstream's public keys and keeps them; the kept ones stay when an upstream cannot be asked. Never throws. */
  async refreshUpstream(): Promise<void> {
    // Once per registry: several routes may name the same upstream URL (one mirrored, another proxied).
    const distinct = this.upstreams.filter((upstream, i) => this.upstreams.findIndex((other) => other.url === upstream.url) === i);
    await Promise.all(distinct.map((upstream) => this.refreshOne(upstream)));
  }

  private async refreshOne(upstream: UpstreamRegistry): Promise<void> {
    let keys: RegistryKey[];
    try {
      const text = await upstream.get('/-/npm/v1/keys', 'its signing keys');
      const body = (text === null ? {} : JSON.parse(text)) as { keys?: unknown };
      keys = (Array.isArray(body.keys) ? body.keys : []).filter(
        (k): k is RegistryKey => !!k && typeof k === 'object' && typeof (k as RegistryKey).keyid === 'string' && typeof (k as RegistryKey).key === 'string',
      );
    } catch (err) {
      this.log.warn({ upstream: upstream.name, err: (err as Error).message }, 'signing keys of an upstream could not be fetched; the kept ones are served');
      return;
    }
    // The first upstream's under the id older versions kept them under.
    const id = upstream === this.upstreams[0] ? UPSTREAM_KEYS_ID : UPSTREAM_KEYS_ID + ':' + upstream.name;
    try {
      const current = (await this.db.get(id)) as UpstreamKeysDoc | null;
      const doc: UpstreamKeysDoc = { _id: id, type: 'upstream-keys', upstream: upstream.url, keys, fetched: new Date().toISOString() };
      if (current) doc._rev = current._rev;
      await this.db.put(doc);
      this.listed = null;
    } catch (err) {
      // Another gateway stored them first, or CouchDB is away: the next refresh tries again.
      this.log.debug({ err: (err as Error).message }, 'an upstream\'s signing keys could not be kept');
    }
  }

  /** Every key to list: this registry's gateways' keys, then the upstreams' (kept). */
  async keys(): Promise<RegistryKey[]> {
    if (this.listed && Date.now() - this.listed.at < 10_000) return this.listed.keys;
    const own = (await this.db.find({ selector: { type: 'signing-key' }, limit: 1000 })) as KeyDoc[];
    // Every upstream's kept keys, also of one no longer configured: its mirrored versions still verify (an offline copy too).
    const upstream = (await this.db.find({ selector: { type: 'upstream-keys' }, limit: 1000 })) as UpstreamKeysDoc[];
    const keys: RegistryKey[] = [];
    const seen = new Set<string>();
    const strip = (k: RegistryKey): RegistryKey => ({ expires: k.expires || null, keyid: k.keyid, keytype: k.keytype, scheme: k.scheme, key: k.key });
    for (const k of [...own.sort((a, b) => a.created.localeCompare(b.created)), ...upstream.flatMap((doc) => doc.keys || [])]) {
      if (seen.has(k.keyid)) continue;
      seen.add(k.keyid);
      keys.push(strip(k));
    }
    this.listed = { keys, own: new Set(own.map((k) => k.keyid)), at: Date.now() };
    return keys;
  }

  /** The ids of this registry's own keys (its gateways', expired ones too), as `keys` last listed them. */
  async ownKeyIds(): Promise<Set<string>> {
    await this.keys();
    return this.listed ? this.listed.own : new Set([this.keyid]);
  }
}
