export type { FuseBinding, Mounted, MountOptions } from './binding.js';
export { Errno, FsError, errnoOf } from './errors.js';
export { FuseNativeBinding } from './fuse-native-binding.js';
export { RezFs, type Attr, type DirEntry, type RezFsOptions, type StatFs } from './rezfs.js';
export { NativeBinding, nativeBindingAvailable, nativeBindingUnavailable } from './native-binding.js';
export { generationChanges, type TreeChanges } from './changes.js';
export { DEFAULT_STARTUP_SETS, StartupSets, type StartupSetPolicy, type StartupSetStats } from './startup-sets.js';
export { PackageCosts, type PackageCost } from './package-costs.js';
