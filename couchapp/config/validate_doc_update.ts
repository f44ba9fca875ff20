/**
 * validate_doc_update of `_design/config` in `<db>-state`: the configuration documents an admin edits
 * there (in Fauxton) are checked when written, so that a typo is refused with what is wrong instead of
 * being saved and taking reads down. Only admins write this database (its `_security`), so the check
 * holds for admins too: there is no bypass. Today that is the supply-chain policy (`supply-chain`);
 * deleting it leaves no policy, which is valid.
 */
import { POLICY_ID, policyProblem } from '../../core/policy';
import { UserCtx } from '../../core/types';

export default function validate_config(newDoc: { _id: string; _deleted?: boolean }, _oldDoc: unknown, _userCtx: UserCtx): void {
  if (newDoc._id !== POLICY_ID || newDoc._deleted) return;
  const problem = policyProblem(newDoc);
  if (problem) {
    throw { forbidden: 'The supply-chain policy ("' + POLICY_ID + '") was not saved: ' + problem + '. Fix it and save again.' };
  }
}
