/** The repository's static server, as tests use it (see src/server). */
export {
  serveRepository,
  type StaticServer,
  type Tamper,
} from '../../src/server/static-server.js';
