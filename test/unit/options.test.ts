import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { addOptions, GivenOptions, parseBoolean, parseCacheSize, parseMaxRequests, parseReadTimeout, parseRefresh } from '../../src/cli/options.js';
import { UsageError } from '../../src/cli/units.js';

/** What a command was given for `args` (and the environment as it is). */
function given(args: string[]): GivenOptions {
  const command = addOptions(new Command('t').exitOverride(), ['store', 'mirror', 'cacheSize', 'allowOther', 'trustKey']).action(() => {});
  command.parse(args, { from: 'user' });
  return GivenOptions.of(command);
}

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('options', () => {
  it('take the command line first, then the environment, then the default, and say which', () => {
    process.env.REZFS_CACHE_SIZE = '30G';
    expect(given(['--cache-size', '10G']).one('cacheSize')).toEqual({ text: '10G', where: '--cache-size' });
    expect(given([]).one('cacheSize')).toEqual({ text: '30G', where: 'REZFS_CACHE_SIZE (--cache-size)' });
    delete process.env.REZFS_CACHE_SIZE;
    expect(given([]).one('cacheSize')).toEqual({ text: '20G', where: '--cache-size' });
    expect(given([]).one('cacheSize', false)).toBeUndefined();
  });

  it('refuse a single-valued option given twice, and a missing required one', () => {
    expect(() => given(['--store', 'file:///a', '--store', 'file:///b']).one('store')).toThrow(
      new UsageError('--store was given 2 times (file:///a, file:///b): give it once'),
    );
    delete process.env.REZFS_STORE;
    expect(() => given([]).required('store')).toThrow(new UsageError('--store is required (or set REZFS_STORE)'));
  });

  it('collect repeatable options from the command line, or a comma-separated variable', () => {
    process.env.REZFS_MIRRORS = 'file:///m1, file:///m2';
    expect(given([]).all('mirror').map((g) => g.text)).toEqual(['file:///m1', 'file:///m2']);
    expect(given(['--mirror', 'file:///x', '--mirror', 'file:///y']).all('mirror').map((g) => g.text)).toEqual(['file:///x', 'file:///y']);
  });

  it('read switches from the environment as booleans, refusing anything else', () => {
    for (const [word, on] of [['0', false], ['false', false], ['No', false], ['off', false], ['1', true], ['TRUE', true], ['yes', true]] as const) {
      process.env.REZFS_ALLOW_OTHER = word;
      expect(given([]).flag('allowOther'), word).toBe(on);
    }
    process.env.REZFS_ALLOW_OTHER = 'maybe';
    expect(() => given([]).flag('allowOther')).toThrow(/REZFS_ALLOW_OTHER \(--allow-other\) "maybe" is not a boolean/);
    expect(given(['--allow-other']).flag('allowOther')).toBe(true);
    expect(() => parseBoolean({ text: '', where: 'X' })).toThrow(UsageError);
  });

  it('bound values: sizes and durations out of range are refused, 0 turns polling off', () => {
    expect(() => parseCacheSize({ text: '1', where: '--cache-size' })).toThrow(/too small: at least 8\.0 MiB/);
    expect(parseCacheSize({ text: '8M', where: '--cache-size' })).toBe(8 * 1024 * 1024);
    expect(() => parseReadTimeout({ text: '0', where: '--read-timeout' })).toThrow(/out of range/);
    expect(() => parseReadTimeout({ text: '11m', where: '--read-timeout' })).toThrow(/out of range/);
    expect(parseReadTimeout({ text: '1s', where: '--read-timeout' })).toBe(1000);
    expect(parseRefresh({ text: '0', where: '--refresh' })).toBe(0);
    expect(() => parseRefresh({ text: '100ms', where: '--refresh' })).toThrow(/--refresh 100ms is out of range: use between 250ms and 24h/);
    expect(parseRefresh({ text: '300ms', where: '--refresh' })).toBe(300);
  });

  it('--max-requests: a whole number from 1 to 256; a small cap keeps a smaller reserve for demand reads', () => {
    expect(parseMaxRequests({ text: '16', where: '--max-requests' })).toMatchObject({ maxConcurrentRequests: 16, demandReserve: 4 });
    expect(parseMaxRequests({ text: '6', where: '--max-requests' })).toMatchObject({ maxConcurrentRequests: 6, demandReserve: 1 });
    expect(parseMaxRequests({ text: '2', where: '--max-requests' })).toMatchObject({ maxConcurrentRequests: 2, demandReserve: 0 });
    for (const bad of ['0', '257', '4.5', 'many', '']) {
      expect(() => parseMaxRequests({ text: bad, where: '--max-requests' })).toThrow(/--max-requests .* is not a request count; use a whole number from 1 to 256/);
    }
  });
});
