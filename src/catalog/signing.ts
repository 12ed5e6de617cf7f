import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { sha256Hex } from '../hash.js';
import { CatalogError, canonicalJson } from './codec.js';
import { FORMAT_VERSION, type DocumentSignature } from './schema.js';

/** `index/<hash>.sig`: an ed25519 signature over the exact bytes of `index/<hash>.json`. */
export interface IndexSignature extends DocumentSignature {
  format: string;
}

export class UntrustedCatalogError extends CatalogError {
  constructor(message: string) {
    super(message);
    this.name = 'UntrustedCatalogError';
  }
}

export function generateSigningKeys(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** A short, stable name for a public key, so logs and errors can say which key signed. */
export function keyIdOf(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16);
}

export function loadPrivateKey(pem: string, source: string): KeyObject {
  return loadKey(() => createPrivateKey(pem), source, 'private key (make one with rezfs keygen)');
}

export function loadPublicKey(pem: string, source: string): KeyObject {
  return loadKey(() => createPublicKey(pem), source, 'public key (use the .pub file rezfs keygen wrote)');
}

function loadKey(parse: () => KeyObject, source: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = parse();
  } catch (err) {
    throw new CatalogError(`${source} is not an ed25519 ${what}: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new CatalogError(`${source} is not an ed25519 ${what}: it is a ${key.asymmetricKeyType} key`);
  return key;
}

export function signIndex(privateKey: KeyObject, indexBytes: Buffer): IndexSignature {
  return {
    format: FORMAT_VERSION,
    keyId: keyIdOf(createPublicKey(privateKey)),
    signature: sign(null, indexBytes, privateKey).toString('base64'),
  };
}

/** Accepts the index only if one of the trusted keys made the signature over exactly these bytes. */
export function checkIndexSignature(trusted: readonly KeyObject[], indexBytes: Buffer, signature: IndexSignature | undefined, what: string): void {
  const problem = signatureProblem(trusted, indexBytes, signature);
  if (problem) throw new UntrustedCatalogError(`${what} ${problem}${signature ? '' : '; a mount with --trust-key serves only signed catalogs'}`);
}

/** Why `signature` is not a trusted key's signature over exactly `bytes` (e.g. "is not signed"), or undefined. */
export function signatureProblem(trusted: readonly KeyObject[], bytes: Buffer, signature: DocumentSignature | undefined): string | undefined {
  if (!signature) return 'is not signed';
  const key = trusted.find((k) => keyIdOf(k) === signature.keyId);
  if (!key) return `is signed by key ${signature.keyId}, which is not trusted`;
  if (!verify(null, bytes, key, Buffer.from(signature.signature, 'base64'))) return 'has a signature that does not match its bytes (tampered?)';
  return undefined;
}

/** A document signed in itself: the signature covers the canonical JSON of the document without it. */
export function signDocument<T extends { signature?: DocumentSignature }>(privateKey: KeyObject, document: T): T {
  const signature: DocumentSignature = {
    keyId: keyIdOf(createPublicKey(privateKey)),
    signature: sign(null, unsignedBytes(document), privateKey).toString('base64'),
  };
  return { ...document, signature };
}

/** Why a self-signed document is not signed by a trusted key, or undefined. */
export function documentSignatureProblem(trusted: readonly KeyObject[], document: { signature?: DocumentSignature }): string | undefined {
  return signatureProblem(trusted, unsignedBytes(document), document.signature);
}

function unsignedBytes(document: { signature?: DocumentSignature }): Buffer {
  return canonicalJson({ ...document, signature: undefined });
}
