/**
 * Starts the real OpenID provider of test/helpers/oidc-provider-process.mjs (`oidc-provider`, ESM) in a child
 * process on loopback and drives it: its client, its users and groups, and its mischief (an ID token
 * of another issuer, another audience, or signed with a key it does not publish).
 */
import { ChildProcess, fork } from 'child_process';
import { join } from 'path';

export interface ProviderUser {
  password: string;
  claims: { preferred_username?: string; email?: string; email_verified?: boolean; groups?: string[]; [claim: string]: unknown };
}

export interface Mischief {
  iss?: string;
  aud?: string;
  forged?: boolean;
  /** The token endpoint the discovery document names instead of the provider's own. */
  tokenEndpoint?: string;
}

export interface TestProvider {
  issuer: string;
  /** Registers the registry as the provider's one confidential client. */
  setClient(client: { client_id: string; client_secret: string; redirect_uris: string[] }): Promise<void>;
  /** Replaces the provider's users (login → password and claims). */
  setUsers(users: Record<string, ProviderUser>): Promise<void>;
  /** Alters the ID tokens of the next token answers (null: no more). */
  setMischief(mischief: Mischief | null): Promise<void>;
  stop(): Promise<void>;
}

export function startTestProvider(): Promise<TestProvider> {
  const child: ChildProcess = fork(join(__dirname, 'oidc-provider-process.mjs'), [], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let sequence = 0;
  const waiting = new Map<number, () => void>();
  const send = (message: Record<string, unknown>) =>
    new Promise<void>((resolve) => {
      const id = ++sequence;
      waiting.set(id, resolve);
      child.send({ ...message, id });
    });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error('the test OpenID provider exited (' + code + '): ' + stderr)));
    child.on('message', (message: { ready?: boolean; issuer?: string; id?: number }) => {
      if (message.ready) {
        resolve({
          issuer: message.issuer as string,
          setClient: (client) => send({ type: 'client', client: { ...client, grant_types: ['authorization_code'], response_types: ['code'] } }),
          setUsers: (users) => send({ type: 'users', users }),
          setMischief: (mischief) => send({ type: 'mischief', mischief }),
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.removeAllListeners('exit');
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
        return;
      }
      const done = message.id !== undefined ? waiting.get(message.id) : undefined;
      if (done) {
        waiting.delete(message.id as number);
        done();
      }
    });
  });
}
