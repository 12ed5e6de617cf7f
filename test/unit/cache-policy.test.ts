import { describe, expect, it } from 'vitest';
import { IMMUTABLE_SEC, cacheSeconds } from '../../src/fs/cache-policy.js';
import { changedNames } from '../../src/fs/changes.js';
import { childPath } from '../../src/fs/paths.js';
import { parseMountinfo } from '../../src/mount-table.js';

const timeouts = { attrTimeoutSec: 300, negativeTimeoutSec: 60 };

describe('cacheSeconds: how long the kernel keeps an entry', () => {
  it('keeps the root, families and versions\' own entries for the mount\'s timeouts, present or absent', () => {
    expect(cacheSeconds('/', true, timeouts)).toBe(300);
    expect(cacheSeconds('/maya', true, timeouts)).toBe(300);
    expect(cacheSeconds('/maya', false, timeouts)).toBe(60);
    expect(cacheSeconds('/maya/2024.1', true, timeouts)).toBe(300);
    expect(cacheSeconds('/maya/.ignore2024.1', false, timeouts)).toBe(60);
  });

  it('keeps everything inside a published version for good, missing names included', () => {
    expect(cacheSeconds('/maya/2024.1/package.py', true, timeouts)).toBe(IMMUTABLE_SEC);
    expect(cacheSeconds('/maya/2024.1/lib/libfoo.so', false, timeouts)).toBe(IMMUTABLE_SEC);
    expect(cacheSeconds('/maya/2024.1/a/b/c/d', true, timeouts)).toBe(IMMUTABLE_SEC);
  });
});

describe('childPath', () => {
  it('joins like the kernel names paths', () => {
    expect(childPath('/', 'maya')).toBe('/maya');
    expect(childPath('/maya', '1.0')).toBe('/maya/1.0');
    expect(childPath('/maya/1.0', 'été x')).toBe('/maya/1.0/été x');
  });
});

describe('changedNames: which names of a family a new generation touches', () => {
  const names = (entries: Record<string, string>) => new Map(Object.entries(entries));

  it('names added, removed and replaced entries, and nothing else', () => {
    const before = names({ '1.0': 'v:a', '2.0': 'v:b', '.ignore1.0': 'x:1' });
    const after = names({ '1.0': 'v:a', '2.0': 'v:B', '3.0': 'v:c' });
    expect(changedNames(before, after).sort()).toEqual(['.ignore1.0', '2.0', '3.0']);
    expect(changedNames(after, after)).toEqual([]);
  });

  it('counts every name either side knows as changed when one side could not be loaded', () => {
    expect(changedNames(undefined, names({ '1.0': 'v:a' }))).toEqual(['1.0']);
    expect(changedNames(names({ '1.0': 'v:a', '2.0': 'v:b' }), undefined).sort()).toEqual(['1.0', '2.0']);
  });
});

describe('parseMountinfo: the mount table from /proc/self/mountinfo', () => {
  const mountinfo = [
    '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '42 27 0:39 / /var/tmp/a\\040b/mnt ro,nosuid,nodev,relatime - fuse.rezfs s3://x ro,user_id=0,group_id=0',
    '43 27 0:40 / /var/tmp/mnt ro,nosuid - fuse.rezfs file:///s ro',
    '44 27 0:41 / /var/tmp/café\\011x ro - fuse.rezfs file:///s ro', // a UTF-8 name stays as it is; a tab is escaped
  ].join('\n');

  it('reads id, device, mountpoint, type and source of every line, escaped characters decoded, optional fields skipped', () => {
    expect(parseMountinfo(mountinfo)).toEqual([
      { mountId: 22, device: '254:1', mountpoint: '/', fsType: 'ext4', source: '/dev/vda' },
      { mountId: 42, device: '0:39', mountpoint: '/var/tmp/a b/mnt', fsType: 'fuse.rezfs', source: 's3://x' },
      { mountId: 43, device: '0:40', mountpoint: '/var/tmp/mnt', fsType: 'fuse.rezfs', source: 'file:///s' },
      { mountId: 44, device: '0:41', mountpoint: '/var/tmp/café\tx', fsType: 'fuse.rezfs', source: 'file:///s' },
    ]);
  });

  it('skips a line that is not a mount entry', () => {
    expect(parseMountinfo('\n22 1 254:1 / /\nnot a line at all')).toEqual([]);
  });
});
