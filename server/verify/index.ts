export {
  verifiers,
  parseVerifyConfig,
  describeVerifyConfig,
  verifyRequest,
  handshakeAnswer,
} from './registry.ts';
export type { HandshakeAnswer, SignedRequest, VerifyResult } from './verifier.ts';
