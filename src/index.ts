/**
 * The repository side's public API, for scripts and the server that embed
 * tufota instead of calling its command line.
 */
export * from './errors.js';
export { Keyring } from './keys/keyring.js';
export {
  KEY_TYPES,
  generatePrivateKey,
  publicKeyFor,
  type KeyType,
} from './keys/keygen.js';
export { readKeyFile, writeKeyFile } from './keys/keyfile.js';
export {
  FixedPassphrase,
  PromptPassphrase,
  passphraseSource,
  type PassphraseSource,
} from './keys/passphrase.js';
export {
  initRepository,
  type InitOptions,
  type InitResult,
} from './repository/init.js';
export {
  publish,
  type PublishOptions,
  type PublishResult,
} from './repository/publish.js';
export { Repository, type TargetInput } from './repository/repository.js';
export {
  repositoryStatus,
  type RepositoryStatus,
  type RoleStatus,
} from './repository/status.js';
export { verifyRepository, type VerifyReport } from './repository/verify.js';
export { run } from './cli/main.js';
