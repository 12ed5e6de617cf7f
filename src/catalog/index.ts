export { Catalog, EMPTY_INDEX, defaultStoreConfig, readHead, readIndex, readManifest, readShard, readStoreConfig, type Head } from './catalog.js';
export { CatalogError, canonicalJson, encodeDocument, sha256Hex } from './codec.js';
export * from './schema.js';
export { countSubdirs } from './tree.js';
