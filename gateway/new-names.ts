/**
 * Who may take a name that is new here. A package published here is always served instead of the
 * upstream's package of the same name, so with an upstream configured, a name the upstream has
 * belongs to it: a user who took it would put their code in front of it for every client (and
 * around the supply-chain policy, which holds back mirrored versions only). Such a name, like a name
 * the policy blocks as a whole, is taken by an admin only. Names in a private scope are never asked
 * of the upstream; they are the company's own.
 */
import { forbidden, HttpError, UPSTREAM_FAILED } from './errors';
import { Context, readPackage } from './context';
import { wholePackageBlock } from '../core/policy';
import { fetchFailure, upstreamPath } from '../replication/upstream';

/** Throws 403 (or 424 when the upstream cannot be asked) unless `user` may publish or register `name` here. */
export async function assertMayTakeName(ctx: Context, user: { name: string; roles: string[] }, name: string): Promise<void> {
  if (user.roles.indexOf('_admin') !== -1) return;
  // A package here already, published or mirrored: its maintainers decide (validate_doc_update), and a
  // mirrored one is refused with its own reason.
  if (await readPackage(ctx, name)) return;
  const block = ctx.policy ? wholePackageBlock(ctx.policy.current, name) : undefined;
  if (block) throw forbidden('"' + name + '" is blocked on this registry (' + (block.reason || 'no reason given') + '), so nobody but an admin publishes it here. Choose another name.');
  // Asked of the upstream the name is routed to (none for a private scope or a name no upstream is routed).
  const upstream = ctx.upstreams.upstreamFor(name)?.registry;
  if (!upstream) return;
  let upstreamHasIt: boolean;
  try {
    upstreamHasIt = (await upstream.get(upstreamPath(name, []), '"' + name + '"')) !== null;
  } catch (err) {
    throw new HttpError(
      UPSTREAM_FAILED,
      'This registry could not ask its upstream ' + upstream.url + ' whether it has "' + name + '" (' + fetchFailure(err).words + '); a new name is published here only once the upstream has been asked. Try again later.',
    );
  }
  if (upstreamHasIt) {
    throw forbidden(
      '"' + name + '" is a package of the upstream registry ' + upstream.url + ': published here, it would be served instead of that one to every client. ' +
        'Publish it under a private scope of this registry (REPLICATION_PRIVATE_SCOPES, e.g. @your-company/' + name.replace(/^@[^/]+\//, '') + '), or ask an admin to publish it.',
    );
  }
}
