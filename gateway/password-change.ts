/**
 * A change of an account's own password, as `npm profile set password` and the account page make
 * it: the new password is checked, the current one verified (with the log-in throttle of
 * accounts.ts), then the caller asks for the second factor and writes it. The account's stamp
 * changes with its password, so its tokens and page sessions end.
 */
import { Request, Response } from 'express';
import { Accounts, passwordProblem } from './accounts';
import { abandonSignal, clientAddress } from './auth';
import { badRequest, unauthorized } from './errors';

/**
 * Checks that `name` may change their password from `old` to `next`: 400 when the new one is too
 * short, 401 when the current one is wrong. Writes nothing.
 */
export async function checkPasswordChange(accounts: Accounts, req: Request, res: Response, name: string, old: string, next: string): Promise<void> {
  const weak = passwordProblem(next);
  if (weak) throw badRequest(weak);
  if (!(await accounts.verify(name, old, clientAddress(req), abandonSignal(res)))) throw unauthorized('Wrong current password for "' + name + '".');
}
