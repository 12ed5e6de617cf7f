export { PublishInputError } from './errors.js';
export { publish, type PublishOptions, type PublishProgress, type PublishSummary } from './publisher.js';
export { ignoredVersions, retire, retireVersions, type RetireOutcome, type RetireResult, type RetireSelection, type RetireTarget } from './retire.js';
export { attachProfiles, type AttachSummary } from './attach-profiles.js';
export type { Refusal } from './scan.js';
