/**
 * The @tufjs/models classes this project uses, in one place. Delegations,
 * DelegatedRole, Role and getPublicKey (how clients decode a key) are not
 * re-exported by the package index, so they are taken from their modules
 * here and nowhere else.
 */
export {
  Key,
  MetaFile,
  Metadata,
  MetadataKind,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';
export { Delegations } from '@tufjs/models/dist/delegations.js';
export { DelegatedRole, Role, SuccinctRoles } from '@tufjs/models/dist/role.js';
export { getPublicKey } from '@tufjs/models/dist/utils/key.js';
