export { PublishInputError } from './errors.js';
export { publish, type PublishOptions, type PublishProgress, type PublishSummary } from './publisher.js';
