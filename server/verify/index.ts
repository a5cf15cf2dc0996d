export { verifiers, parseVerifyConfig, describeVerifyConfig, verifyRequest } from './registry.ts';
export type { SignedRequest, VerifyResult } from './verifier.ts';
