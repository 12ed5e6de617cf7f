export { PublishInputError } from './errors.js';
export { publish, type PublishOptions, type PublishProgress, type PublishSummary } from './publisher.js';
export { retire, retireVersions, type RetireOutcome, type RetireResult, type RetireTarget } from './retire.js';
