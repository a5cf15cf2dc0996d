export {
  verifiers,
  parseVerifyConfig,
  describeVerifyConfig,
  verifyRequest,
  handshakeAnswer,
  providerMethods,
  replayKeyOf,
} from './registry.ts';
export type { HandshakeAnswer, ReplayKey, SignedRequest, VerifyResult } from './verifier.ts';
